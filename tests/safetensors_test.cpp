// safetensors reader and FP8 dequantisation: handcrafted valid and malformed
// files, the FP8 decode table against its formula, and the two Hugging Face
// fixture checkpoints (float32 and DeepSeek-style FP8) against each other.
// Malformed input must give a moe::Error naming the file and the problem,
// never a crash or a huge allocation.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>

#include "convert/fp8.h"
#include "convert/safetensors.h"
#include "test_util.h"

using moe::SafetensorInfo;
using moe::SafetensorsCheckpoint;
using moe::SafetensorsDtype;
using moe::SafetensorsFile;
namespace fs = std::filesystem;

namespace {

// A safetensors file: u64 header length, the header text, the data buffer.
std::vector<uint8_t> st_bytes(const std::string& header, const std::vector<uint8_t>& data, int64_t length = -1) {
  std::vector<uint8_t> b(8 + header.size() + data.size());
  const uint64_t n = length < 0 ? header.size() : static_cast<uint64_t>(length);
  std::memcpy(b.data(), &n, 8);
  if (!header.empty()) std::memcpy(b.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(b.data() + 8 + header.size(), data.data(), data.size());
  return b;
}

std::vector<uint8_t> f32_bytes(std::initializer_list<float> v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), std::data(v), b.size());
  return b;
}

SafetensorsFile parse(const std::vector<uint8_t>& b) { return SafetensorsFile::parse(b.data(), b.size(), "test.safetensors"); }

// Parsing must fail with a moe::Error naming the file and every fragment.
void expect_error(const std::vector<uint8_t>& b, std::initializer_list<const char*> fragments) {
  try {
    parse(b);
    FAIL("parsed without error; expected: " << *fragments.begin());
  } catch (const moe::Error& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    CHECK(msg.find("test.safetensors") != std::string::npos);
    for (const char* f : fragments) CHECK_MESSAGE(msg.find(f) != std::string::npos, "missing fragment: " << std::string(f));
  }
}

void expect_header_error(const std::string& header, size_t data_bytes, std::initializer_list<const char*> fragments) {
  expect_error(st_bytes(header, std::vector<uint8_t>(data_bytes, 0)), fragments);
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

std::string hf_dir(const char* stem) { return moe::test::shared_fixture(std::string("hf/") + stem); }

}  // namespace

TEST_CASE("fp8: the E4M3 table matches the formula on all 256 codes") {
  for (int i = 0; i < 256; ++i) {
    const int s = i >> 7, e = (i >> 3) & 15, m = i & 7;
    const float got = moe::fp8_e4m3_to_f32(static_cast<uint8_t>(i));
    INFO("code 0x" << std::hex << i);
    if (e == 15 && m == 7) {
      CHECK(std::isnan(got));
      continue;
    }
    const double mag = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
    const float want = static_cast<float>(s ? -mag : mag);
    CHECK(bits(got) == bits(want));  // also tells +0 from -0
  }
  CHECK(moe::fp8_e4m3_to_f32(0x38) == 1.0f);
  CHECK(moe::fp8_e4m3_to_f32(0x7e) == 448.0f);
  CHECK(moe::fp8_e4m3_to_f32(0xfe) == -448.0f);
  CHECK(moe::fp8_e4m3_to_f32(0x01) == std::ldexp(1.0f, -9));  // smallest subnormal
  CHECK(moe::fp8_e4m3_to_f32(0x08) == std::ldexp(1.0f, -6));  // smallest normal
  CHECK(bits(moe::fp8_e4m3_to_f32(0x80)) == 0x80000000u);
  CHECK(moe::fp8_e5m2_to_f32(0x3c) == 1.0f);
  CHECK(std::isinf(moe::fp8_e5m2_to_f32(0x7c)));
  CHECK(moe::fp8_e5m2_to_f32(0x01) == std::ldexp(1.0f, -16));
}

TEST_CASE("safetensors: a valid handcrafted file") {
  // Tensors listed out of data order; a scalar and an empty tensor.
  const std::string h =
      R"({"b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},)"
      R"( "__metadata__": {"format": "pt"},)"
      R"( "a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},)"
      R"( "s": {"dtype": "F16", "shape": [], "data_offsets": [16, 18]},)"
      R"( "z": {"dtype": "I64", "shape": [0, 3], "data_offsets": [18, 18]}}    )";  // trailing spaces are allowed
  std::vector<uint8_t> data = {0x80, 0x3f, 0x00, 0x40, 0x40, 0x40, 0x80, 0xbf};  // bf16 1, 2, 3, -1
  const auto b2 = f32_bytes({0.5f, -7.25f});
  data.insert(data.end(), b2.begin(), b2.end());
  data.push_back(0x00);
  data.push_back(0x3c);  // f16 1.0
  const auto b = st_bytes(h, data);
  const SafetensorsFile f = parse(b);
  REQUIRE(f.tensors().size() == 4);
  CHECK(f.tensors()[0].name == "a");  // data order
  CHECK(f.metadata().at("format") == "pt");
  const SafetensorInfo* a = f.find("a");
  REQUIRE(a != nullptr);
  CHECK(a->dtype == SafetensorsDtype::BF16);
  CHECK(a->shape_string() == "[2, 2]");
  CHECK(moe::tensor_to_f32(*a) == std::vector<float>{1, 2, 3, -1});
  CHECK(moe::tensor_to_f32(*f.find("b")) == std::vector<float>{0.5f, -7.25f});
  CHECK(f.find("s")->n_elements == 1);
  CHECK(moe::tensor_to_f32(*f.find("s")) == std::vector<float>{1.0f});
  CHECK(f.find("z")->nbytes == 0);
  CHECK(f.find("missing") == nullptr);
  CHECK_THROWS_AS(moe::tensor_to_f32(*f.find("z")), moe::Error);  // I64 is not a float type
}

TEST_CASE("safetensors: FP8 block scales, and their validation") {
  // A 3x5 FP8 weight with 2x2 blocks: scale_inv is [2, 3].
  std::vector<uint8_t> data(15);
  for (int i = 0; i < 15; ++i) data[i] = static_cast<uint8_t>(0x30 + i);
  const std::vector<float> s = {1.0f, 2.0f, 0.5f, -4.0f, 0.25f, 3.0f};
  const auto sb = f32_bytes({1.0f, 2.0f, 0.5f, -4.0f, 0.25f, 3.0f});
  data.push_back(0);  // pad so the scales start at 16 (not required)
  const std::string h =
      R"({"w": {"dtype": "F8_E4M3", "shape": [3, 5], "data_offsets": [0, 15]},)"
      R"( "pad": {"dtype": "U8", "shape": [1], "data_offsets": [15, 16]},)"
      R"( "w_scale_inv": {"dtype": "F32", "shape": [2, 3], "data_offsets": [16, 40]},)"
      R"( "bad_scale": {"dtype": "F32", "shape": [3, 2], "data_offsets": [40, 64]}})";
  data.insert(data.end(), sb.begin(), sb.end());
  data.insert(data.end(), sb.begin(), sb.end());
  const auto b = st_bytes(h, data);
  const SafetensorsFile f = parse(b);
  const auto v = moe::tensor_to_f32(*f.find("w"), f.find("w_scale_inv"), 2, 2);
  REQUIRE(v.size() == 15);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 5; ++c)
      CHECK(v[r * 5 + c] == moe::fp8_e4m3_to_f32(static_cast<uint8_t>(0x30 + r * 5 + c)) * s[(r / 2) * 3 + c / 2]);
  try {
    moe::tensor_to_f32(*f.find("w"), f.find("bad_scale"), 2, 2);
    FAIL("no error");
  } catch (const moe::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("expected shape [2, 3]") != std::string::npos);
    CHECK(msg.find("found [3, 2]") != std::string::npos);
    CHECK(msg.find("'w'") != std::string::npos);
  }
  CHECK_THROWS_WITH_AS(moe::tensor_to_f32(*f.find("w")), doctest::Contains("w_scale_inv"), moe::Error);
  CHECK_THROWS_AS(moe::tensor_to_f32(*f.find("w_scale_inv"), f.find("w_scale_inv")), moe::Error);
}

TEST_CASE("safetensors: malformed files give errors naming the file and the problem") {
  const std::string t = R"("t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})";
  SUBCASE("shorter than the length field") { expect_error({1, 2, 3}, {"too short"}); }
  SUBCASE("header length beyond the file") { expect_error(st_bytes("{" + t + "}", {}, 1000), {"header length 1000", "exceeds"}); }
  SUBCASE("truncated header") {
    auto b = st_bytes("{" + t + "}", std::vector<uint8_t>(8));
    b.resize(20);
    expect_error(b, {"header length"});
  }
  SUBCASE("huge header length") { expect_error(st_bytes("{}", {}, int64_t(1) << 62), {"exceeds"}); }
  SUBCASE("bad JSON") { expect_header_error(R"({"t": {"dtype": "F32", )", 0, {"invalid JSON"}); }
  SUBCASE("not an object") { expect_header_error("[1, 2]", 0, {"JSON object"}); }
  SUBCASE("nested too deep") { expect_header_error("{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}", 0, {"nested deeper"}); }
  SUBCASE("unknown dtype") {
    expect_header_error(R"({"t": {"dtype": "F12", "shape": [2], "data_offsets": [0, 8]}})", 8, {"'t'", "unknown dtype 'F12'"});
  }
  SUBCASE("dtype not a string") {
    expect_header_error(R"({"t": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}})", 8, {"'t'", "dtype"});
  }
  SUBCASE("missing field") { expect_header_error(R"({"t": {"dtype": "F32", "shape": [2]}})", 8, {"'t'", "data_offsets", "missing"}); }
  SUBCASE("unknown field") {
    expect_header_error(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}})", 8, {"'t'", "unknown field 'x'"});
  }
  SUBCASE("metadata value not a string") { expect_header_error(R"({"__metadata__": {"k": 1}})", 0, {"__metadata__", "'k'"}); }
  SUBCASE("data_offsets beyond the buffer") {
    expect_header_error(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4, {"'t'", "beyond the 4-byte data buffer"});
  }
  SUBCASE("data_offsets reversed") {
    expect_header_error(R"({"t": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}})", 8, {"'t'", "end before begin"});
  }
  SUBCASE("data_offsets not integers") {
    expect_header_error(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, "8"]}})", 8, {"'t'", "data_offsets"});
    expect_header_error(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 9]}})", 8, {"'t'", "data_offsets"});
  }
  SUBCASE("size mismatch") {
    expect_header_error(R"({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8, {"'t'", "hold 8 bytes, expected 12", "F32 [3]"});
  }
  SUBCASE("overlapping tensors") {
    expect_header_error(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                        R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                        12, {"'b'", "overlaps tensor 'a'"});
  }
  SUBCASE("a hole between tensors") {
    expect_header_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                        R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
                        12, {"'b'", "hole of 4 bytes"});
  }
  SUBCASE("trailing bytes") { expect_header_error("{" + t + "}", 12, {"4 trailing bytes"}); }
  SUBCASE("duplicate names") {
    expect_header_error("{" + t + ", " + t + "}", 8, {"key 't' appears more than once"});
  }
  SUBCASE("duplicate field") {
    expect_header_error(R"({"t": {"dtype": "F32", "dtype": "F16", "shape": [2], "data_offsets": [0, 8]}})", 8, {"'dtype' appears more than once"});
  }
  SUBCASE("negative dimension") {
    expect_header_error(R"({"t": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8, {"'t'", "shape[0] is -2"});
  }
  SUBCASE("fractional dimension") {
    expect_header_error(R"({"t": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", 8, {"'t'", "shape[0]"});
  }
  SUBCASE("huge dimensions") {
    expect_header_error(R"({"t": {"dtype": "F32", "shape": [99999999999999999999], "data_offsets": [0, 8]}})", 8, {"'t'", "shape[0]"});
    expect_header_error(R"({"t": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})", 8, {"'t'", "overflows"});
    expect_header_error(R"({"t": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 8]}})", 8, {"'t'", "overflows"});
  }
  SUBCASE("empty name") { expect_header_error(R"({"": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 8, {"empty name"}); }
}

TEST_CASE("safetensors: both fixture checkpoints open") {
  const std::string f32_dir = hf_dir("hf-tiny-dsv3"), fp8_dir = hf_dir("hf-tiny-dsv3-fp8");
  if (f32_dir.empty() || fp8_dir.empty()) return moe::test::skip("no hf/ fixtures in ../shared/fixtures");
  const auto f32 = SafetensorsCheckpoint::open(f32_dir);
  const auto fp8 = SafetensorsCheckpoint::open(fp8_dir);
  CHECK(f32.shards().size() == 2);
  CHECK(fp8.shards().size() == 2);
  CHECK(f32.names().front() == "model.embed_tokens.weight");
  const SafetensorInfo& kvb = f32.tensor("model.layers.0.self_attn.kv_b_proj.weight");
  CHECK(kvb.dtype == SafetensorsDtype::F32);
  CHECK(kvb.shape == std::vector<int64_t>{4 * (64 + 64), 128});  // [n_heads * (qk_nope + v_head), kv_lora_rank]
  CHECK_THROWS_WITH_AS(f32.tensor("nope"), doctest::Contains("'nope' is missing"), moe::Error);
  for (const std::string& n : f32.names()) {
    INFO(n);
    CHECK(f32.find(n) != nullptr);
  }
}

// The float32 checkpoint holds the original weights, not fp8 * scale_inv:
// the FP8 one is their DeepSeek-style quantisation (scale_inv = block amax /
// 448, each weight rounded to the nearest E4M3 code of w / scale_inv). So the
// dequantised values are not bit-identical; each must be within half an E4M3
// step of the original (3 mantissa bits: 2^(e-4) for |w/s| in [2^e, 2^(e+1)),
// 2^-10 in the subnormal range), in units of its block's scale.
TEST_CASE("safetensors: the FP8 checkpoint dequantises to the float32 checkpoint within FP8 precision") {
  const std::string f32_dir = hf_dir("hf-tiny-dsv3"), fp8_dir = hf_dir("hf-tiny-dsv3-fp8");
  if (f32_dir.empty() || fp8_dir.empty()) return moe::test::skip("no hf/ fixtures in ../shared/fixtures");
  const auto f32 = SafetensorsCheckpoint::open(f32_dir);
  const auto fp8 = SafetensorsCheckpoint::open(fp8_dir);
  size_t n_fp8 = 0, n_plain = 0, n_scales = 0;
  uint64_t n_values = 0, n_identical = 0, n_outside = 0, n_scale_not_amax = 0;
  double worst = 0;  // largest error in half E4M3 steps
  for (const std::string& name : fp8.names()) {
    INFO(name);
    if (name.ends_with("_scale_inv")) {
      ++n_scales;
      CHECK(f32.find(name) == nullptr);
      const std::string w = name.substr(0, name.size() - std::strlen("_scale_inv"));
      REQUIRE(fp8.find(w) != nullptr);
      CHECK(fp8.find(w)->dtype == SafetensorsDtype::F8_E4M3);
      continue;
    }
    const SafetensorInfo& q = fp8.tensor(name);
    const SafetensorInfo* ref = f32.find(name);
    REQUIRE(ref != nullptr);
    CHECK(q.shape == ref->shape);
    if (q.dtype == SafetensorsDtype::F8_E4M3) {
      ++n_fp8;
      CHECK(name.find("model.layers.") == 0);
      CHECK(name.find("mlp.gate.weight") == std::string::npos);  // the router stays float32
      const SafetensorInfo* si = fp8.find_scale_inv(name);
      REQUIRE(si != nullptr);
      const auto got = moe::tensor_to_f32(q, si);
      const auto want = moe::tensor_to_f32(*ref);
      const auto scale = moe::tensor_to_f32(*si);
      REQUIRE(got.size() == want.size());
      const int64_t rows = q.shape[0], cols = q.shape[1], scols = si->shape[1];
      std::vector<float> amax(scale.size(), 0.0f);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          const size_t i = static_cast<size_t>(r * cols + c), b = static_cast<size_t>((r / 128) * scols + c / 128);
          const double w = want[i], s = scale[b];
          amax[b] = std::max(amax[b], std::fabs(want[i]));
          int e;
          std::frexp(std::fabs(w / s), &e);  // |w/s| in [2^(e-1), 2^e)
          const double half_step = std::ldexp(1.0, std::max(e - 1, -6) - 4);
          const double err = std::fabs(got[i] - w) / s / half_step;
          worst = std::max(worst, err);
          n_outside += err > 1.0 + 1e-6;
          n_identical += bits(got[i]) == bits(want[i]);
        }
      }
      for (size_t b = 0; b < scale.size(); ++b) n_scale_not_amax += scale[b] != amax[b] / 448.0f;
      n_values += got.size();
    } else {
      ++n_plain;
      CHECK(q.dtype == SafetensorsDtype::F32);
      CHECK(fp8.find_scale_inv(name) == nullptr);
      CHECK(q.nbytes == ref->nbytes);
      CHECK(std::memcmp(q.data, ref->data, q.nbytes) == 0);  // bit-identical
    }
  }
  MESSAGE("FP8 weights: " << n_fp8 << " (" << n_values << " values, " << n_identical
                          << " bit-identical to the float32 checkpoint, largest error " << worst
                          << " half E4M3 steps); float32 tensors: " << n_plain);
  CHECK(n_fp8 > 0);
  CHECK(n_fp8 == n_scales);
  CHECK(n_outside == 0);
  CHECK(n_scale_not_amax == 0);  // scale_inv = block amax / 448, in float32
  CHECK(n_fp8 + n_plain == f32.names().size());
}

TEST_CASE("safetensors: checkpoint index and shards must agree") {
  const std::string fp8_dir = hf_dir("hf-tiny-dsv3-fp8");
  const std::string dir = moe::test::temp_dir();
  const std::string t = R"("t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})";
  const auto shard_t = st_bytes("{" + t + "}", f32_bytes({1.0f}));
  auto expect_open_error = [&](std::initializer_list<const char*> fragments) {
    try {
      SafetensorsCheckpoint::open(dir);
      FAIL("opened without error");
    } catch (const moe::Error& e) {
      const std::string msg = e.what();
      INFO("message: " << msg);
      for (const char* f : fragments) CHECK_MESSAGE(msg.find(f) != std::string::npos, "missing fragment: " << std::string(f));
    }
  };
  SUBCASE("empty directory") { expect_open_error({"no model.safetensors"}); }
  SUBCASE("a single file") {
    moe::test::write_file(dir + "/model.safetensors", shard_t);
    const auto c = SafetensorsCheckpoint::open(dir);
    CHECK(c.names() == std::vector<std::string>{"t"});
    CHECK(moe::tensor_to_f32(c.tensor("t")) == std::vector<float>{1.0f});
  }
  SUBCASE("a missing shard, named with the tensors it holds") {
    if (fp8_dir.empty()) return moe::test::skip("no hf/ fixtures in ../shared/fixtures");
    fs::copy_file(fp8_dir + "/model.safetensors.index.json", dir + "/model.safetensors.index.json");
    fs::create_symlink(fp8_dir + "/model-00001-of-00002.safetensors", dir + "/model-00001-of-00002.safetensors");
    expect_open_error({"shard 'model-00002-of-00002.safetensors' is missing", "tensors in it", "model.layers."});
  }
  SUBCASE("a tensor listed in the index but absent from its shard") {
    moe::test::write_file(dir + "/a.safetensors", shard_t);
    const std::string idx = R"({"weight_map": {"t": "a.safetensors", "u": "a.safetensors"}})";
    moe::test::write_file(dir + "/model.safetensors.index.json", idx.data(), idx.size());
    expect_open_error({"'u'", "'a.safetensors'", "does not hold it"});
  }
  SUBCASE("a tensor in two shards") {
    moe::test::write_file(dir + "/a.safetensors", shard_t);
    moe::test::write_file(dir + "/b.safetensors", shard_t);
    const std::string idx = R"({"weight_map": {"t": "a.safetensors", "u": "b.safetensors"}})";
    moe::test::write_file(dir + "/model.safetensors.index.json", idx.data(), idx.size());
    expect_open_error({"'t'", "two shards", "a.safetensors", "b.safetensors"});
  }
  SUBCASE("a tensor in another shard than listed") {
    moe::test::write_file(dir + "/a.safetensors", shard_t);
    moe::test::write_file(dir + "/b.safetensors", st_bytes("{}", {}));
    const std::string idx = R"({"weight_map": {"t": "b.safetensors", "x": "a.safetensors"}})";
    moe::test::write_file(dir + "/model.safetensors.index.json", idx.data(), idx.size());
    expect_open_error({"'t'", "lists it in 'b.safetensors'"});
  }
  SUBCASE("duplicate names and escaping paths in the index") {
    moe::test::write_file(dir + "/a.safetensors", shard_t);
    std::string idx = R"({"weight_map": {"t": "a.safetensors", "t": "a.safetensors"}})";
    moe::test::write_file(dir + "/model.safetensors.index.json", idx.data(), idx.size());
    expect_open_error({"model.safetensors.index.json", "'t' appears more than once"});
    idx = R"({"weight_map": {"t": "../a.safetensors"}})";
    moe::test::write_file(dir + "/model.safetensors.index.json", idx.data(), idx.size());
    expect_open_error({"inside the checkpoint"});
  }
}

TEST_CASE("safetensors: truncated or corrupted real shards never crash") {
  const std::string path = hf_dir("hf-tiny-dsv3-fp8");
  if (path.empty()) return moe::test::skip("no hf/ fixtures in ../shared/fixtures");
  const auto full = moe::test::read_file(path + "/model-00001-of-00002.safetensors");
  const SafetensorsFile ok = parse(full);
  const size_t header_end = 8 + ok.header_bytes();
  // Every cut inside the length field and the first bytes of the header, then
  // every 7th byte of the header, then points spread over the data.
  std::vector<size_t> cuts;
  for (size_t i = 0; i < 64; ++i) cuts.push_back(i);
  for (size_t i = 64; i < header_end + 16; i += 7) cuts.push_back(i);
  for (size_t i = 1; i <= 64; ++i) cuts.push_back(header_end + (full.size() - header_end) * i / 65);
  cuts.push_back(full.size() - 1);
  size_t n_errors = 0;
  for (size_t cut : cuts) {
    // A copy of exactly `cut` bytes, so ASan sees any read past the end.
    const std::vector<uint8_t> b(full.begin(), full.begin() + cut);
    try {
      SafetensorsFile::parse(b.data(), b.size(), "test.safetensors");
    } catch (const moe::Error& e) {
      ++n_errors;
      CHECK(std::string(e.what()).find("test.safetensors") != std::string::npos);
    }
  }
  CHECK(n_errors == cuts.size());  // no strict prefix of a shard is a valid file

  // Random byte changes in the header: any outcome but a crash or a foreign exception.
  std::mt19937 rng(12345);
  std::vector<uint8_t> b = full;
  for (int k = 0; k < 1500; ++k) {
    const size_t at = std::uniform_int_distribution<size_t>(0, header_end - 1)(rng);
    const uint8_t old = b[at];
    b[at] = static_cast<uint8_t>(rng());
    try {
      const SafetensorsFile f = SafetensorsFile::parse(b.data(), b.size(), "test.safetensors");
      for (const SafetensorInfo& t : f.tensors()) CHECK(t.data + t.nbytes <= b.data() + b.size());
    } catch (const moe::Error&) {
    }
    b[at] = old;
  }
}
