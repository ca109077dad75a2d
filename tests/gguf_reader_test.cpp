// GGUF reader: handcrafted valid and malformed files, typed getters, and the
// reference fixtures. Malformed input must give a GgufError naming the byte
// offset and the field, never a crash or a huge allocation.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "gguf/gguf_reader.h"
#include "gguf_bytes.h"
#include "test_util.h"

using moe::GgufError;
using moe::GgufFile;
using moe::test::GgufBytes;

namespace {

GgufFile parse(const GgufBytes& g) { return GgufFile::parse(g.b.data(), g.b.size(), "test.gguf"); }

// Parsing must fail with a GgufError whose message contains every fragment.
void expect_error(const GgufBytes& g, std::initializer_list<const char*> fragments) {
  try {
    parse(g);
    FAIL("parsed without error; expected: " << *fragments.begin());
  } catch (const GgufError& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    CHECK(msg.find("test.gguf") != std::string::npos);
    CHECK(msg.find("offset") != std::string::npos);
    for (const char* f : fragments) CHECK_MESSAGE(msg.find(f) != std::string::npos, "missing fragment: " << std::string(f));
  }
}

// A small valid file: two metadata keys, two f32 tensors.
GgufBytes valid_file() {
  GgufBytes g;
  g.header(2, 2).kv_str("general.architecture", "deepseek2").kv_u32("deepseek2.expert_count", 16);
  g.tensor("a", {4, 2}, 0, 0).tensor("b", {8}, 0, 32);
  g.pad_to(32);
  for (int i = 0; i < 8; ++i) g.put<float>(static_cast<float>(i));
  g.pad_to(32);
  for (int i = 0; i < 8; ++i) g.put<float>(static_cast<float>(100 + i));
  return g;
}

}  // namespace

TEST_CASE("gguf reader: a handcrafted file parses with offsets, shapes and data") {
  const GgufBytes g = valid_file();
  const GgufFile f = parse(g);
  CHECK(f.version() == 3);
  CHECK(f.alignment() == 32);
  CHECK(f.data_offset() % 32 == 0);
  REQUIRE(f.tensors().size() == 2);
  const auto& a = f.tensor("a");
  CHECK(a.shape == std::vector<int64_t>{4, 2});
  CHECK(a.n_elements == 8);
  CHECK(a.nbytes == 32);
  CHECK(a.n_rows() == 2);
  const float* av = reinterpret_cast<const float*>(a.data);
  CHECK(av[0] == 0.0f);
  CHECK(av[7] == 7.0f);
  const float* bv = reinterpret_cast<const float*>(f.tensor("b").data);
  CHECK(bv[3] == 103.0f);
  CHECK(f.get_string("general.architecture") == "deepseek2");
  CHECK(f.get_u32("deepseek2.expert_count") == 16);
  CHECK(f.find_tensor("c") == nullptr);
  CHECK_THROWS_WITH_AS(f.tensor("c"), doctest::Contains("tensor 'c' is missing"), GgufError);
}

TEST_CASE("gguf reader: version 2 files and files without tensors") {
  GgufBytes g;
  g.header(0, 1, 2).kv_str("general.name", "v2");
  const GgufFile f = parse(g);
  CHECK(f.version() == 2);
  CHECK(f.tensors().empty());
  CHECK(f.get_string("general.name") == "v2");
}

TEST_CASE("gguf reader: every metadata value type, string arrays and nested arrays") {
  GgufBytes g;
  g.header(0, 16);
  g.str("u8").u32(0).u8(200);
  g.str("i8").u32(1).put<int8_t>(-5);
  g.str("u16").u32(2).put<uint16_t>(60000);
  g.str("i16").u32(3).put<int16_t>(-30000);
  g.str("u32").u32(4).u32(4000000000u);
  g.str("i32").u32(5).put<int32_t>(-7);
  g.str("f32").u32(6).put<float>(1.5f);
  g.str("bool").u32(7).u8(1);
  g.str("str").u32(8).str("h\xc3\xa9llo");
  g.str("u64").u32(10).u64(1ull << 40);
  g.str("i64").u32(11).put<int64_t>(-(1ll << 40));
  g.str("f64").u32(12).put<double>(0.1);
  g.str("arr_f32").u32(9).u32(6).u64(3).put<float>(1).put<float>(2).put<float>(3);
  g.str("arr_str").u32(9).u32(8).u64(3).str("<s>").str("").str("\xe6\xb7\xb1");
  // [[1, 2], [3]] as uint16 arrays inside an array
  g.str("nested").u32(9).u32(9).u64(2).u32(2).u64(2).put<uint16_t>(1).put<uint16_t>(2).u32(2).u64(1).put<uint16_t>(3);
  g.str("empty").u32(9).u32(4).u64(0);
  const GgufFile f = parse(g);
  REQUIRE(f.metadata().size() == 16);
  CHECK(f.metadata()[0].key == "u8");  // file order kept
  CHECK(f.get_u32("u8") == 200);
  CHECK(f.get_i32("i8") == -5);
  CHECK(f.get_u32("u16") == 60000);
  CHECK(f.get_i32("i16") == -30000);
  CHECK(f.get_u32("u32") == 4000000000u);
  CHECK(f.get_i32("i32") == -7);
  CHECK(f.get_f32("f32") == 1.5f);
  CHECK(f.get_bool("bool") == true);
  CHECK(f.get_string("str") == "h\xc3\xa9llo");
  CHECK(f.get_u64("u64") == (1ull << 40));
  CHECK(f.find("i64")->as_i64() == -(1ll << 40));
  CHECK(f.get_f32("f64") == doctest::Approx(0.1));
  CHECK(f.get_f32_array("arr_f32") == std::vector<float>{1, 2, 3});
  CHECK(f.get_string_array("arr_str") == std::vector<std::string>{"<s>", "", "\xe6\xb7\xb1"});
  const auto& nested = f.find("nested")->arrays();
  REQUIRE(nested.size() == 2);
  CHECK(nested[0].array_size() == 2);
  CHECK(nested[0].int_at(1) == 2);
  CHECK(nested[1].int_at(0) == 3);
  CHECK(f.find("empty")->array_size() == 0);
  CHECK(f.get_i32_array("empty").empty());
  CHECK(f.find("arr_str")->to_string(2) == "[string; 3] \"<s>\", \"\", ... (1 more)");
}

TEST_CASE("gguf reader: typed getters say what was expected and found") {
  GgufBytes g;
  g.header(0, 4).kv_str("name", "x").kv_u32("count", 7);
  g.str("neg").u32(5).put<int32_t>(-1);
  g.str("big").u32(10).u64(1ull << 33);
  const GgufFile f = parse(g);
  CHECK_THROWS_WITH_AS(f.get_u32("name"), doctest::Contains("key 'name': expected uint32, found string"), GgufError);
  CHECK_THROWS_WITH_AS(f.get_string("count"), doctest::Contains("key 'count': expected string, found uint32"), GgufError);
  CHECK_THROWS_WITH_AS(f.get_u32("missing.key"), doctest::Contains("key 'missing.key' is missing"), GgufError);
  CHECK_THROWS_WITH_AS(f.get_u32("neg"), doctest::Contains("expected uint32"), GgufError);
  CHECK_THROWS_WITH_AS(f.get_u32("big"), doctest::Contains("expected uint32"), GgufError);
  CHECK(f.get_u64("big") == (1ull << 33));
  CHECK(f.get_i32("count") == 7);  // any integer type that fits
  CHECK_FALSE(f.get_u32_opt("missing.key").has_value());
  CHECK(f.get_u32_opt("count") == 7u);
  CHECK_THROWS_AS(f.get_u32_opt("name"), GgufError);  // present but wrong type is still an error
  CHECK_FALSE(f.get_string_opt("missing").has_value());
  CHECK_THROWS_AS(f.get_string_array("name"), GgufError);
}

TEST_CASE("gguf reader: general.alignment moves the data section") {
  GgufBytes g;
  g.header(1, 1).kv_u32("general.alignment", 64).tensor("t", {16}, 0, 0);
  g.pad_to(64);
  for (int i = 0; i < 16; ++i) g.put<float>(1.0f);
  const GgufFile f = parse(g);
  CHECK(f.alignment() == 64);
  CHECK(f.data_offset() % 64 == 0);
  CHECK(reinterpret_cast<const float*>(f.tensor("t").data)[15] == 1.0f);
}

TEST_CASE("gguf reader: malformed headers give errors naming offset and field") {
  SUBCASE("empty and tiny files") {
    expect_error(GgufBytes{}, {"magic", "too small"});
    GgufBytes g;
    g.u32(0x46554747);
    expect_error(g, {"version", "truncated"});
  }
  SUBCASE("bad magic") {
    GgufBytes g;
    g.u32(0x46554746).u32(3).u64(0).u64(0);
    expect_error(g, {"magic", "not a GGUF file"});
  }
  SUBCASE("versions 1, 4 and byte-swapped") {
    GgufBytes g1, g4, gbe;
    g1.header(0, 0, 1);
    g4.header(0, 0, 4);
    gbe.header(0, 0, 0x03000000);
    expect_error(g1, {"version 1"});
    expect_error(g4, {"unsupported GGUF version 4"});
    expect_error(gbe, {"big-endian"});
  }
  SUBCASE("counts larger than the file can hold") {
    GgufBytes g;
    g.header(1ull << 60, 0);
    expect_error(g, {"tensor count"});
    GgufBytes h;
    h.header(0, ~0ull);
    expect_error(h, {"metadata count"});
  }
  SUBCASE("string length beyond the file") {
    GgufBytes g;
    g.header(0, 1).u64(1ull << 62).zeros(16);
    expect_error(g, {"metadata entry 0 key", "string length"});
  }
  SUBCASE("array count beyond the file") {
    GgufBytes g;
    g.header(0, 1).str("arr").u32(9).u32(6).u64(1ull << 61);
    expect_error(g, {"'arr'", "array of"});
    GgufBytes s;
    s.header(0, 1).str("arr").u32(9).u32(8).u64(~0ull);
    expect_error(s, {"'arr'", "cannot fit"});
  }
  SUBCASE("unknown value types and array element types") {
    GgufBytes g;
    g.header(0, 1).str("k").u32(13).u32(0);
    expect_error(g, {"'k' value type", "unknown value type 13"});
    GgufBytes a;
    a.header(0, 1).str("k").u32(9).u32(77).u64(1);
    expect_error(a, {"unknown value type 77"});
  }
  SUBCASE("arrays nested too deep") {
    GgufBytes g;
    g.header(0, 1).str("deep").u32(9);
    for (int i = 0; i < 20; ++i) g.u32(9).u64(1);
    g.u32(4).u64(0);
    expect_error(g, {"'deep'", "nested deeper"});
  }
  SUBCASE("bool that is neither 0 nor 1") {
    GgufBytes g;
    g.header(0, 1).str("b").u32(7).u8(2);
    expect_error(g, {"'b'", "bool"});
  }
  SUBCASE("duplicate and empty keys") {
    GgufBytes g;
    g.header(0, 2).kv_u32("a.b", 1).kv_u32("a.b", 2);
    expect_error(g, {"'a.b'", "duplicate key"});
    GgufBytes e;
    e.header(0, 1).kv_u32("", 1);
    expect_error(e, {"empty key"});
  }
  SUBCASE("bad alignment") {
    GgufBytes g0, g3, gs;
    g0.header(0, 1).kv_u32("general.alignment", 0);
    g3.header(0, 1).kv_u32("general.alignment", 48);
    gs.header(0, 1).kv_str("general.alignment", "32");
    expect_error(g0, {"'general.alignment'", "not a power of two"});
    expect_error(g3, {"'general.alignment'", "48 is not a power of two"});
    expect_error(gs, {"'general.alignment'", "expected uint32, found string"});
  }
  SUBCASE("tensor dimensions: count, overflow, block size") {
    GgufBytes nd0, nd5, ovf, huge, blk;
    nd0.header(1, 0).tensor("t", {}, 0, 0).zeros(32);
    nd5.header(1, 0).tensor("t", {1, 1, 1, 1, 1}, 0, 0);
    ovf.header(1, 0).tensor("t", {1ull << 32, 1ull << 32}, 0, 0);
    huge.header(1, 0).tensor("t", {1ull << 63}, 0, 0);
    blk.header(1, 0).tensor("t", {100, 2}, 12, 0);  // q4_K rows must be multiples of 256
    expect_error(nd0, {"tensor 0 ('t')", "n_dims is 0"});
    expect_error(nd5, {"n_dims is 5"});
    expect_error(ovf, {"('t')", "overflows"});
    expect_error(huge, {"('t')", "too large"});
    expect_error(blk, {"('t')", "not a multiple of the q4_K block size 256"});
  }
  SUBCASE("unknown and removed tensor types") {
    for (uint32_t id : {4u, 5u, 31u, 36u, 43u, 999u}) {
      GgufBytes g;
      g.header(1, 0).tensor("w", {32}, id, 0);
      expect_error(g, {"('w')", "unknown tensor type id"});
    }
  }
  SUBCASE("misaligned tensor offset") {
    GgufBytes g;
    g.header(1, 0).tensor("t", {8}, 0, 4).pad_to(32).zeros(64);
    expect_error(g, {"('t')", "not a multiple of the alignment 32"});
  }
  SUBCASE("tensor data outside the file") {
    GgufBytes g;
    g.header(1, 0).tensor("t", {64}, 0, 0).pad_to(32).zeros(100);  // needs 256 bytes
    expect_error(g, {"('t')", "outside the data section"});
    GgufBytes far;
    far.header(1, 0).tensor("t", {8}, 0, 1ull << 60).pad_to(32).zeros(32);
    expect_error(far, {"('t')", "outside the data section"});
  }
  SUBCASE("overlapping tensors") {
    GgufBytes g;
    g.header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {16}, 0, 32).pad_to(32).zeros(128);
    expect_error(g, {"overlaps tensor 'a'"});
  }
  SUBCASE("duplicate and empty tensor names") {
    GgufBytes g;
    g.header(2, 0).tensor("a", {8}, 0, 0).tensor("a", {8}, 0, 32).pad_to(32).zeros(64);
    expect_error(g, {"('a')", "duplicate tensor name"});
    GgufBytes e;
    e.header(1, 0).tensor("", {8}, 0, 0).pad_to(32).zeros(32);
    expect_error(e, {"empty tensor name"});
  }
}

TEST_CASE("gguf reader: truncating a valid file anywhere gives an error, never a crash") {
  const GgufBytes g = valid_file();
  for (size_t n = 0; n < g.size(); ++n) {
    CAPTURE(n);
    CHECK_THROWS_AS(GgufFile::parse(g.b.data(), n, "cut.gguf"), GgufError);
  }
  CHECK_NOTHROW(GgufFile::parse(g.b.data(), g.size(), "whole.gguf"));
}

TEST_CASE("gguf reader: open() errors name the file") {
  CHECK_THROWS_WITH_AS(GgufFile::open("/nonexistent/model.gguf"), doctest::Contains("/nonexistent/model.gguf"), moe::Error);
  const std::string dir = moe::test::temp_dir();
  CHECK_THROWS_WITH_AS(GgufFile::open(dir), doctest::Contains("not a regular file"), moe::Error);
  const std::string empty = dir + "/empty.gguf";
  moe::test::write_file(empty, "", 0);
  CHECK_THROWS_WITH_AS(GgufFile::open(empty), doctest::Contains("too small"), GgufError);
}

TEST_CASE("gguf reader: every reference fixture loads") {
  const std::string dir = moe::test::shared_fixtures_dir();
  if (dir.empty()) return moe::test::skip("../shared/fixtures not found");
  int n_models = 0, n_files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.path().extension() != ".gguf") continue;
    CAPTURE(e.path().string());
    const GgufFile f = GgufFile::open(e.path().string(), /*map=*/true, /*whole_set=*/false);
    ++n_files;
    uint64_t bytes = 0;
    for (const auto& t : f.tensors()) bytes += t.nbytes;
    CHECK(bytes <= f.file_size() - f.data_offset());
    // Later shards of a gguf-split set and importance matrices carry no
    // model metadata; every model file (or first shard) does.
    if (f.get_u32_opt("split.no").value_or(0) > 0 || e.path().filename().string().find("imatrix") != std::string::npos)
      continue;
    const std::string arch = f.get_string("general.architecture");
    CHECK((arch == "deepseek2" || arch == "deepseek32" || arch == "deepseek4"));
    const auto& tokens = f.get_string_array("tokenizer.ggml.tokens");
    CHECK(tokens.size() == f.find("tokenizer.ggml.token_type")->array_size());
    ++n_models;
  }
  CHECK(n_models >= 11);  // 10 models and the vocabulary
  CHECK(n_files >= n_models);
}

TEST_CASE("gguf reader: the full DeepSeek-V3 vocabulary file") {
  const std::string p = moe::test::shared_fixture("tokenizer/deepseek-v3-vocab.gguf");
  if (p.empty()) return moe::test::skip("deepseek-v3-vocab.gguf not found");
  const GgufFile f = GgufFile::open(p);
  CHECK(f.tensors().empty());
  CHECK(f.get_string_array("tokenizer.ggml.tokens").size() == 129280);
  CHECK(f.get_string_array("tokenizer.ggml.merges").size() == 127741);
  CHECK(f.get_string("tokenizer.ggml.pre") == "deepseek-v3");
}
