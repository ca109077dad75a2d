// quantize_row_ref: byte identity with llama-quantize's output (every tensor
// of the quantized fixture models, re-quantized from the f32 fixture), round
// trips through dequantize_row_ref on random data, and bad inputs; and the
// importance-weighted row quantizers against hashes of ggml's output.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/ggml_type.h"
#include "gguf/gguf_reader.h"
#include "quant/blocks.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace {

using moe::GgmlType;

struct MatchStats {
  int tensors = 0;
  int identical = 0;
  std::string first_mismatch;  // "file: tensor at byte k"
};

// Re-quantizes every tensor of `quant_rel` from the same-named tensor of
// `f32_rel`, row by row, and compares the bytes. Returns false (after a
// skip) when a fixture is absent.
bool requantize_and_compare(const std::string& quant_rel, const std::string& f32_rel,
                            std::map<GgmlType, MatchStats>& stats) {
  const std::string quant_path = moe::test::shared_fixture("models/" + quant_rel);
  const std::string f32_path = moe::test::shared_fixture("models/" + f32_rel);
  if (quant_path.empty() || f32_path.empty()) {
    moe::test::skip("fixture " + quant_rel + " or " + f32_rel + " is absent");
    return false;
  }
  const moe::GgufFile quant = moe::GgufFile::open(quant_path);
  const moe::GgufFile ref = moe::GgufFile::open(f32_path);
  for (const moe::GgufTensorInfo& t : quant.tensors()) {
    CAPTURE(quant_rel);
    CAPTURE(t.name);
    const moe::GgufTensorInfo* src = ref.find_tensor(t.name);
    REQUIRE(src != nullptr);
    REQUIRE(src->type == GgmlType::F32);
    REQUIRE(src->shape == t.shape);
    REQUIRE(moe::quantize_supported(t.type));

    const int64_t row = t.ne(0);
    const int64_t rows = t.n_rows();
    const size_t row_bytes = moe::ggml_row_size(t.type, row);
    REQUIRE(row_bytes * static_cast<size_t>(rows) == t.nbytes);
    std::vector<uint8_t> out(t.nbytes);
    const auto* x = reinterpret_cast<const float*>(src->data);
    for (int64_t r = 0; r < rows; ++r) {
      moe::quantize_row_ref(t.type, x + r * row, out.data() + r * row_bytes, row);
    }

    MatchStats& s = stats[t.type];
    ++s.tensors;
    if (std::memcmp(out.data(), t.data, t.nbytes) == 0) {
      ++s.identical;
    } else if (s.first_mismatch.empty()) {
      size_t k = 0;
      while (out[k] == t.data[k]) ++k;
      s.first_mismatch = quant_rel + ": " + t.name + " at byte " + std::to_string(k) + " (block " +
                         std::to_string(k / moe::ggml_type_traits(t.type).type_size) + ")";
    }
  }
  return true;
}

}  // namespace

TEST_CASE("quantize_row_ref is byte-identical to llama-quantize on the fixture models") {
  std::map<GgmlType, MatchStats> stats;
  const char* const dsv3[] = {"Q8_0", "Q4_0", "Q6_K", "Q4_K_M"};
  const char* const dsv2lite[] = {"Q8_0", "Q4_K_M", "F16"};
  for (const char* ftype : dsv3) {
    if (!requantize_and_compare(std::string("tiny-dsv3.") + ftype + ".gguf", "tiny-dsv3.f32.gguf", stats)) return;
  }
  for (const char* ftype : dsv2lite) {
    if (!requantize_and_compare(std::string("tiny-dsv2lite.") + ftype + ".gguf", "tiny-dsv2lite.f32.gguf", stats)) {
      return;
    }
  }
  std::printf("quantize_row_ref vs llama-quantize (tensors identical / tensors):\n");
  for (const auto& [type, s] : stats) {
    std::printf("  %-5s %4d / %4d%s%s\n", moe::ggml_type_name(type), s.identical, s.tensors,
                s.first_mismatch.empty() ? "" : "  first mismatch: ", s.first_mismatch.c_str());
  }
  for (const auto& [type, s] : stats) {
    CAPTURE(moe::ggml_type_name(type));
    CAPTURE(s.first_mismatch);
    CHECK(s.identical == s.tensors);
  }
}

namespace {

// Largest relative RMS error ||deq - x|| / ||x|| accepted on the data below
// (Gaussian, one zero and one constant super-block): 1.5-2x the measured
// error, in the comments. A wrong layout gives errors near 1.
double round_trip_bound(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return 0.0;
    case GgmlType::F16: return 4e-4;    // measured 2.01e-4
    case GgmlType::BF16: return 3e-3;   // measured 1.61e-3
    case GgmlType::Q8_0: return 0.01;   // measured 5.38e-3
    case GgmlType::Q8_K: return 0.012;  // measured 7.19e-3
    case GgmlType::Q6_K: return 0.03;   // measured 1.75e-2
    case GgmlType::Q5_0: return 0.07;   // measured 4.25e-2
    case GgmlType::Q5_1: return 0.06;   // measured 3.73e-2
    case GgmlType::Q5_K: return 0.06;   // measured 3.56e-2
    case GgmlType::Q4_0: return 0.14;   // measured 8.61e-2
    case GgmlType::Q4_1: return 0.12;   // measured 7.73e-2
    case GgmlType::Q4_K: return 0.12;   // measured 7.18e-2
    case GgmlType::Q3_K: return 0.25;   // measured 0.150
    case GgmlType::Q2_K: return 0.45;   // measured 0.294
    case GgmlType::MXFP4: return 0.18;  // measured 0.115
    default: return -1;
  }
}

}  // namespace

TEST_CASE("quantize_row_ref round-trips random data within each type's error") {
  const GgmlType types[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                            GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K,
                            GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_K, GgmlType::MXFP4};
  constexpr int64_t kN = 256 * 16;
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(kN);
  for (float& v : x) v = normal(rng);
  // A zero block and a constant block exercise the degenerate paths.
  for (int i = 0; i < 256; ++i) x[256 + i] = 0.0f;
  for (int i = 0; i < 256; ++i) x[512 + i] = 0.75f;

  for (GgmlType type : types) {
    CAPTURE(moe::ggml_type_name(type));
    std::vector<uint8_t> q(moe::ggml_row_size(type, kN));
    moe::quantize_row_ref(type, x.data(), q.data(), kN);
    std::vector<float> back(kN);
    moe::dequantize_row_ref(type, q.data(), back.data(), kN);
    double err2 = 0, ref2 = 0;
    for (int64_t i = 0; i < kN; ++i) {
      err2 += (double(back[i]) - x[i]) * (double(back[i]) - x[i]);
      ref2 += double(x[i]) * x[i];
    }
    const double rel = std::sqrt(err2 / ref2);
    CAPTURE(rel);
    CHECK(rel <= round_trip_bound(type));
    for (int i = 0; i < 256; ++i) CHECK(back[256 + i] == 0.0f);  // zeros stay zeros
  }
}

// One Q5_0 block of tiny-dsv2lite's blk.4.ffn_up_exps.weight (block 656)
// and the bytes llama-quantize wrote for it. Here x * (1/d) + 16.5 lands within
// an ulp of an integer, so a build that fuses the multiply-add into an FMA (as
// g++ does by default with -march=native, even in ISO C++ mode) writes a
// different code: this guards quantize.cpp's fp-contract=off without fixtures.
TEST_CASE("quantize_row_ref rounds a*b+c twice, as ggml's C reference does") {
  const float x[32] = {
      0x1.914782p-5f,  -0x1.3dfbb8p-6f, -0x1.44f264p-4f, -0x1.c13ec8p-4f, -0x1.24a70ap-7f, -0x1.2730dap-4f,
      0x1.380372p-9f,  0x1.15fa44p-4f,  -0x1.c3d3a8p-4f, 0x1.aa2de4p-4f,  -0x1.4df5dp-6f,  -0x1.a0c6d2p-6f,
      0x1.18e386p-9f,  0x1.0b2b14p-3f,  0x1.1ae9aap-4f,  0x1.b146cp-7f,   0x1.6f201ap-5f,  0x1.4da0b6p-6f,
      -0x1.301546p-5f, 0x1.8ab86cp-4f,  -0x1.17e55p-5f,  0x1.136584p-4f,  -0x1.859c1ap-6f, 0x1.3ed4aep-4f,
      0x1.95c924p-7f,  0x1.dfc00ep-5f,  -0x1.f00b76p-6f, -0x1.a47a24p-6f, 0x1.04e162p-4f,  -0x1.cf375ap-9f,
      0x1.c8cebep-4f,  0x1.c8063ep-6f};
  const uint8_t expected[22] = {0x2d, 0xa0, 0x7e, 0x1d, 0x54, 0x2c, 0xba, 0xe2, 0x5a, 0x4d, 0x41,
                                0x89, 0x30, 0x68, 0xee, 0x93, 0x43, 0x33, 0x80, 0x00, 0x28, 0xde};
  uint8_t out[22] = {};
  moe::quantize_row_ref(GgmlType::Q5_0, x, out, 32);
  for (int i = 0; i < 22; ++i) {
    CAPTURE(i);
    CHECK(out[i] == expected[i]);
  }
}

TEST_CASE("quantize_row_ref rejects bad inputs") {
  std::vector<float> x(512, 1.0f);
  std::vector<uint8_t> y(4096);
  CHECK_THROWS_AS(moe::quantize_row_ref(GgmlType::Q4_0, x.data(), y.data(), 33), moe::Error);
  CHECK_THROWS_AS(moe::quantize_row_ref(GgmlType::Q4_K, x.data(), y.data(), 128), moe::Error);
  CHECK_THROWS_AS(moe::quantize_row_ref(GgmlType::Q8_0, x.data(), y.data(), -32), moe::Error);
  try {
    moe::quantize_row_ref(GgmlType::IQ2_XXS, x.data(), y.data(), 256);
    FAIL("expected an error for iq2_xxs");
  } catch (const moe::Error& e) {
    CHECK(std::string(e.what()).find("iq2_xxs") != std::string::npos);
  }
  CHECK_NOTHROW(moe::quantize_row_ref(GgmlType::Q4_0, x.data(), y.data(), 0));
}

namespace {

// xorshift64* on integers and float sums of its 24-bit uniforms: the same
// numbers on every platform (std:: distributions may differ by library).
struct XorShift64 {
  uint64_t s;
  uint32_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return static_cast<uint32_t>((s * 0x2545F4914F6CDD1Dull) >> 32);
  }
  float uniform() { return static_cast<float>(next() >> 8) * (1.0f / 16777216.0f); }  // [0, 1), exact
  float centered() { return uniform() + uniform() + uniform() + uniform() - 2.0f; }   // bell-shaped, (-2, 2)
};

// Rows with the cases that steer ggml's searches into their corners: plain
// data, one large outlier, an all-zero super-block next to zero groups, and
// values near GROUP_MAX_EPS (1e-15), where groups count as all zero.
std::vector<float> weighted_test_rows(int64_t n, int nrows) {
  XorShift64 rng{0x9E3779B97F4A7C15ull};
  std::vector<float> x(static_cast<size_t>(n * nrows));
  for (int r = 0; r < nrows; ++r) {
    float* row = x.data() + r * n;
    const float scale = r % 4 == 3 ? 3e-15f : 0.05f / static_cast<float>(1 + r);
    for (int64_t i = 0; i < n; ++i) row[i] = rng.centered() * scale;
    if (r % 4 == 1) row[37 % n] = 9.5f;
    if (r % 4 == 2) {
      for (int64_t i = 0; i < n / 2; ++i) row[i] = 0.0f;
      for (int64_t i = n - 48; i < n - 16; ++i) row[i] = 0.0f;
    }
  }
  return x;
}

// Importance weights: dense (with zero entries and one zero 16-group), or
// sparse (one non-zero weight per 32 columns). With a single weight the
// group fit is degenerate and can return a negative scale, which ggml's
// make_qp_quants wraps into a uint8_t code that Q4_K then stores unclamped.
std::vector<float> weighted_test_imatrix(int64_t n, bool sparse) {
  // Seed 28 makes that happen in two Q4_K super-blocks and one Q5_K one.
  XorShift64 rng{sparse ? 28u : 0xD1B54A32D192ED03ull};
  std::vector<float> w(static_cast<size_t>(n), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    if (sparse) {
      if (i % 32 == 0) w[i + static_cast<int64_t>(rng.next() % 32)] = rng.uniform() * 100.0f;
    } else {
      w[i] = i % 7 == 3 || (i >= 16 && i < 32) ? 0.0f : rng.uniform() * 4.0f;
    }
  }
  return w;
}

template <typename Block>
using WeightedRow = void (*)(const float*, Block*, int64_t, const float*);

// FNV-1a of the rows quantized with the dense, then the sparse imatrix.
template <typename Block>
uint64_t weighted_hash(WeightedRow<Block> quantize, int64_t n) {
  constexpr int kRows = 4;
  const std::vector<float> x = weighted_test_rows(n, kRows);
  const int64_t blocks = n / Block::kElements;
  uint64_t h = 0xcbf29ce484222325ull;
  for (bool sparse : {false, true}) {
    const std::vector<float> w = weighted_test_imatrix(n, sparse);
    std::vector<Block> y(static_cast<size_t>(blocks * kRows));
    for (int r = 0; r < kRows; ++r) quantize(x.data() + r * n, y.data() + r * blocks, n, w.data());
    h = moe::test::fnv1a64(y.data(), y.size() * sizeof(Block), h);
  }
  return h;
}

}  // namespace

// The expected values are FNV-1a hashes of what ggml_quantize_chunk (so
// ggml's static quantize_row_*_impl) wrote for the same rows and imatrix, in
// llama.cpp 3.22.1 as bundled in node-llama-cpp (libggml-base built -O3,
// x86-64 without FMA); four rows per type, 256 columns for the legacy types
// and 512 for the K types.
TEST_CASE("weighted (imatrix) quantizers are byte-identical to ggml's quantize_row_*_impl") {
  using namespace moe::quant_detail;
  CHECK(weighted_hash<moe::BlockQ4_0>(quantize_row_q4_0_weighted, 256) == 0x6375d6142042d897ull);
  CHECK(weighted_hash<moe::BlockQ4_1>(quantize_row_q4_1_weighted, 256) == 0xc2320c6caff15752ull);
  CHECK(weighted_hash<moe::BlockQ5_0>(quantize_row_q5_0_weighted, 256) == 0xdaf4e2e58d15b21full);
  CHECK(weighted_hash<moe::BlockQ5_1>(quantize_row_q5_1_weighted, 256) == 0x92ec3393395a7f63ull);
  CHECK(weighted_hash<moe::BlockQ2_K>(quantize_row_q2_k_weighted, 512) == 0x805db98f8bcea43full);
  CHECK(weighted_hash<moe::BlockQ3_K>(quantize_row_q3_k_weighted, 512) == 0xf6e4b4b4412d2c4dull);
  CHECK(weighted_hash<moe::BlockQ4_K>(quantize_row_q4_k_weighted, 512) == 0x89d9b30bbd4c0d83ull);
  CHECK(weighted_hash<moe::BlockQ5_K>(quantize_row_q5_k_weighted, 512) == 0xee6d17a29755f663ull);
  CHECK(weighted_hash<moe::BlockQ6_K>(quantize_row_q6_k_weighted, 512) == 0x1839907b578bd5b4ull);
}
