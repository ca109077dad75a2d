// GGUF writer: byte layout checked against a hand-assembled file, round
// trips of every value and tensor type through the reader, the temporary
// file discipline, and byte-identical rewrites of llama.cpp-written files.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <random>

#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "gguf_bytes.h"
#include "test_util.h"

using namespace moe;
namespace fs = std::filesystem;

TEST_CASE("gguf writer: bytes equal a hand-assembled file") {
  const std::string dir = test::temp_dir();
  const std::string path = dir + "/w.gguf";
  const float data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  {
    GgufWriter w(path);
    w.set("general.architecture", GgufValue::string("deepseek2"));
    w.set("x.count", GgufValue::u32(16));
    w.add_tensor("a", GgmlType::F32, {4, 2});
    w.add_tensor("b", GgmlType::F32, {3});
    w.begin();
    w.write_tensor_data(data, sizeof data);
    w.write_tensor_data(data, 12);
    w.finish();
  }
  test::GgufBytes g;
  g.header(2, 2).kv_str("general.architecture", "deepseek2").kv_u32("x.count", 16);
  g.tensor("a", {4, 2}, 0, 0).tensor("b", {3}, 0, 32).pad_to(32);
  g.b.insert(g.b.end(), reinterpret_cast<const uint8_t*>(data), reinterpret_cast<const uint8_t*>(data) + 32);
  g.b.insert(g.b.end(), reinterpret_cast<const uint8_t*>(data), reinterpret_cast<const uint8_t*>(data) + 12);
  g.pad_to(32);
  CHECK(test::read_file(path) == g.b);
}

TEST_CASE("gguf writer: every metadata type and every tensor type round-trips") {
  const std::string path = test::temp_dir() + "/all.gguf";
  std::vector<std::pair<std::string, GgufValue>> kv = {
      {"general.alignment", GgufValue::u32(64)},
      {"v.u8", GgufValue::u8(255)},
      {"v.i8", GgufValue::i8(-128)},
      {"v.u16", GgufValue::u16(65535)},
      {"v.i16", GgufValue::i16(-32768)},
      {"v.u32", GgufValue::u32(0xffffffffu)},
      {"v.i32", GgufValue::i32(-2147483647 - 1)},
      {"v.u64", GgufValue::u64(~0ull)},
      {"v.i64", GgufValue::i64(-(1ll << 62))},
      {"v.f32", GgufValue::f32(-0.25f)},
      {"v.f64", GgufValue::f64(1e300)},
      {"v.bool", GgufValue::boolean(false)},
      {"v.str", GgufValue::string("\xe6\xb7\xb1\xe5\xba\xa6 <think>")},
      {"v.empty_str", GgufValue::string("")},
      {"v.arr_i32", GgufValue::array<int32_t>(GgufType::INT32, {-1, 0, 1})},
      {"v.arr_f64", GgufValue::array<double>(GgufType::FLOAT64, {0.5, 2.5})},
      {"v.arr_bool", GgufValue::array_raw(GgufType::BOOL, 2, {1, 0})},
      {"v.arr_str", GgufValue::array_of_strings({"a", "", "ccc"})},
      {"v.arr_arr", GgufValue::array_of_arrays({GgufValue::array_of_strings({"x"}),
                                                GgufValue::array<uint64_t>(GgufType::UINT64, {7, 8})})},
      {"v.arr_empty", GgufValue::array<float>(GgufType::FLOAT32, {})},
  };
  // One tensor of every type id ggml has, with random bytes.
  std::mt19937 rng(42);
  std::vector<std::vector<uint8_t>> datas;
  std::vector<std::pair<std::string, GgmlType>> tensors;
  for (uint32_t id = 0; id < static_cast<uint32_t>(kGgmlTypeIdLimit); ++id) {
    const GgmlTypeTraits* t = ggml_type_traits(id);
    if (!t) continue;
    tensors.emplace_back(std::string("t.") + t->name, static_cast<GgmlType>(id));
  }
  {
    GgufWriter w(path);
    for (const auto& [k, v] : kv) w.set(k, v);
    for (const auto& [name, type] : tensors) {
      const int64_t ne0 = ggml_type_traits(type).block_size * 2;
      const size_t i = w.add_tensor(name, type, {ne0, 3});
      std::vector<uint8_t> d(w.tensor_nbytes(i));
      for (auto& b : d) b = static_cast<uint8_t>(rng());
      datas.push_back(std::move(d));
    }
    w.begin();
    for (const auto& d : datas) w.write_tensor_data(d.data(), d.size());
    w.finish();
  }
  const GgufFile f = GgufFile::open(path);
  CHECK(f.alignment() == 64);
  REQUIRE(f.metadata().size() == kv.size());
  for (size_t i = 0; i < kv.size(); ++i) {
    CAPTURE(kv[i].first);
    CHECK(f.metadata()[i].key == kv[i].first);
    CHECK(f.metadata()[i].value == kv[i].second);
  }
  REQUIRE(f.tensors().size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const GgufTensorInfo& t = f.tensors()[i];
    CAPTURE(t.name);
    CHECK(t.name == tensors[i].first);
    CHECK(t.type == tensors[i].second);
    CHECK(t.offset % 64 == 0);
    REQUIRE(t.nbytes == datas[i].size());
    CHECK(std::equal(datas[i].begin(), datas[i].end(), t.data));
  }
}

TEST_CASE("gguf writer: output appears only when finished, and failures leave the old file") {
  const std::string dir = test::temp_dir();
  const std::string path = dir + "/out.gguf";
  test::write_file(path, "old", 3);
  {
    GgufWriter w(path);
    w.add_tensor("t", GgmlType::F32, {4});
    w.begin();
    CHECK(fs::exists(w.temp_path()));
    CHECK_THROWS_WITH(w.write_tensor_data("12345678", 8), doctest::Contains("16 expected"));
  }  // abandoned: the temporary file goes, the old output stays
  CHECK(test::read_file(path) == std::vector<uint8_t>{'o', 'l', 'd'});
  int n_files = 0;
  for (const auto& e : fs::directory_iterator(dir)) n_files += e.is_regular_file();
  CHECK(n_files == 1);
  {
    GgufWriter w(path);
    w.add_tensor("t", GgmlType::F32, {4});
    w.begin();
    CHECK_THROWS_WITH(w.finish(), doctest::Contains("'t'"));
  }
  CHECK(test::read_file(path).size() == 3);
}

TEST_CASE("gguf writer: rejects what the reader would reject") {
  GgufWriter w(test::temp_dir() + "/x.gguf");
  CHECK_THROWS_WITH(w.add_tensor("q", GgmlType::Q4_K, {100}), doctest::Contains("q4_K"));
  w.add_tensor("a", GgmlType::F32, {1});
  CHECK_THROWS_WITH(w.add_tensor("a", GgmlType::F32, {1}), doctest::Contains("duplicate"));
  CHECK_THROWS(w.add_tensor("b", GgmlType::F32, {1, 1, 1, 1, 1}));
  CHECK_THROWS(w.set("general.alignment", GgufValue::u32(24)));
}

TEST_CASE("gguf writer: rewriting llama.cpp's files reproduces them byte for byte") {
  for (const char* name : {"models/tiny-dsv3.Q4_K_M.gguf", "models/tiny-dsv2lite.F16.gguf"}) {
    const std::string src = test::shared_fixture(name);
    if (src.empty()) {
      test::skip(std::string(name) + " not found");
      continue;
    }
    CAPTURE(name);
    const GgufFile in = GgufFile::open(src);
    const std::string out = test::temp_dir() + "/copy.gguf";
    GgufWriter w(out, in.alignment());
    for (const auto& kv : in.metadata()) w.set(kv.key, kv.value);
    for (const auto& t : in.tensors()) w.add_tensor(t.name, t.type, t.shape);
    w.begin();
    for (const auto& t : in.tensors()) w.write_tensor_data(t.data, t.nbytes);
    w.finish();
    const auto a = test::read_file(src), b = test::read_file(out);
    CHECK(a.size() == b.size());
    CHECK(a == b);
  }
}
