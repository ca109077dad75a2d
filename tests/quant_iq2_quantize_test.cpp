// The IQ2 and IQ1 quantizers (quantize_iq2.cpp, quantize_iq1.cpp): byte
// identity with ggml on deterministic rows that steer the searches into
// their corners, and the dequantized rows staying near the input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/ggml_type.h"
#include "quant/blocks_iq.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace {

using moe::GgmlType;

// Marsaglia's xorshift32 and floats made of 24 of its bits: the same inputs
// on every platform and compiler (no std:: distributions, no libm).
struct Xorshift32 {
  uint32_t s;
  uint32_t next() {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    return s;
  }
  float unit() { return static_cast<float>(next() >> 8) * (1.0f / 16777216.0f); }  // [0, 1)
  float bell() {  // (-1.5, 1.5); the calls sequenced, so the sum is the same everywhere
    const float a = unit(), b = unit(), c = unit();
    return a + b + c - 1.5f;
  }
};

constexpr int64_t kCols = 512;  // two super-blocks per row
constexpr int kRows = 7;

// Row 0: bell-shaped values; 1: the same with two outliers of either sign;
// 2: an all-zero super-block, then zero 16- and 32-element groups; 3: groups
// scaled down to around the types' "all zero" thresholds (1e-7 for IQ1_M
// down to 1e-15); 4: five distinct values (ties in IQ1's sort); 5: positive
// only (the IQ2 sign parity then never flips); 6: per 8 values one small
// negative and seven positive ones near 1 (see test_weights).
std::vector<float> test_rows() {
  Xorshift32 rng{0x2545f491u};
  std::vector<float> x(static_cast<size_t>(kCols * kRows));
  constexpr float kTiny[4] = {3e-7f, 2e-9f, 4e-13f, 5e-16f};
  for (int r = 0; r < kRows; ++r) {
    float* row = x.data() + r * kCols;
    for (int64_t i = 0; i < kCols; ++i) {
      const float v = rng.bell();
      switch (r) {
        case 3: row[i] = v * kTiny[(i / 16) % 4]; break;
        case 4: row[i] = static_cast<float>(static_cast<int>(rng.next() % 5) - 2) * 0.01f; break;
        case 5: row[i] = rng.unit() * 0.3f; break;
        case 6: row[i] = i % 8 == 0 ? -0.001f * (0.5f + rng.unit()) : 0.5f + rng.unit(); break;
        default: row[i] = v * 0.04f; break;
      }
    }
    if (r == 1) {
      row[37] = 1.7f;
      row[300] = -2.3f;
    }
    if (r == 2) {
      for (int64_t i = 0; i < 256; ++i) row[i] = 0.0f;
      for (int64_t i = 256 + 64; i < 256 + 96; ++i) row[i] = 0.0f;
      for (int64_t i = 512 - 16; i < 512; ++i) row[i] = 0.0f;
    }
  }
  return x;
}

// Importance weights: dense with zeros (every 5th column and one 16-element
// group); sparse (one non-zero weight per 32 columns: degenerate fits); or
// skewed, every 8th column weighing 10^5 times the others. With row 6 the
// skewed weights make the small negative value (which IQ2_XXS's and IQ2_XS's
// sign parity keeps negative) dominate the fit, whose scale then comes out
// negative: ggml's "should never happen" branch, which flips the signs.
enum class Weights { kDense, kSparse, kSkewed };
std::vector<float> test_weights(Weights kind) {
  const bool sparse = kind == Weights::kSparse;
  Xorshift32 rng{sparse ? 0x9e3779b9u : kind == Weights::kSkewed ? 0x165667b1u : 0x85ebca6bu};
  std::vector<float> w(static_cast<size_t>(kCols), 0.0f);
  for (int64_t i = 0; i < kCols; ++i) {
    if (kind == Weights::kSkewed) {
      w[i] = (i % 8 == 0 ? 100.0f : 0.001f) * (0.5f + rng.unit());
    } else if (sparse) {
      if (i % 32 == 0) {
        const int64_t at = i + rng.next() % 32;
        w[at] = rng.unit() * 50.0f;
      }
    } else {
      w[i] = i % 5 == 2 || (i >= 80 && i < 96) ? 0.0f : rng.unit() * 3.0f;
    }
  }
  return w;
}

template <typename Block>
using RowQuantizer = void (*)(const float*, Block*, int64_t, const float*);

// FNV-1a of all rows quantized with the dense, sparse and skewed weights,
// then (where ggml allows it) none.
template <typename Block>
uint64_t quantized_hash(RowQuantizer<Block> quantize, bool without_weights) {
  const std::vector<float> x = test_rows();
  constexpr int64_t kBlocks = kCols / Block::kElements;
  uint64_t h = 0xcbf29ce484222325ull;
  const std::vector<float> dense = test_weights(Weights::kDense), sparse = test_weights(Weights::kSparse),
                           skewed = test_weights(Weights::kSkewed);
  for (const float* w : {dense.data(), sparse.data(), skewed.data(), static_cast<const float*>(nullptr)}) {
    if (!w && !without_weights) continue;
    std::vector<Block> y(static_cast<size_t>(kBlocks * kRows));
    for (int r = 0; r < kRows; ++r) quantize(x.data() + r * kCols, y.data() + r * kBlocks, kCols, w);
    h = moe::test::fnv1a64(y.data(), y.size() * sizeof(Block), h);
  }
  return h;
}

// ||x - dequantize(quantize(x))|| / ||x|| over rows 0 (bell-shaped) and 5
// (positive), with positive weights everywhere.
template <typename Block>
double relative_rms_error(GgmlType type, RowQuantizer<Block> quantize) {
  const std::vector<float> x = test_rows();
  Xorshift32 rng{0x27d4eb2fu};
  std::vector<float> w(static_cast<size_t>(kCols));
  for (float& v : w) v = 0.5f + rng.unit();
  double err = 0, norm = 0;
  for (int r : {0, 5}) {
    const float* row = x.data() + r * kCols;
    std::vector<Block> y(static_cast<size_t>(kCols / Block::kElements));
    quantize(row, y.data(), kCols, w.data());
    std::vector<float> back(static_cast<size_t>(kCols));
    moe::dequantize_row_ref(type, y.data(), back.data(), kCols);
    for (int64_t i = 0; i < kCols; ++i) {
      err += (back[i] - row[i]) * static_cast<double>(back[i] - row[i]);
      norm += row[i] * static_cast<double>(row[i]);
    }
  }
  return std::sqrt(err / norm);
}

}  // namespace

// The expected values are FNV-1a hashes of what ggml_quantize_chunk (ggml's
// quantize_row_iq2_xxs_impl, quantize_row_iq2_xs_impl,
// quantize_row_iq2_s_impl, quantize_row_iq1_s_impl and
// quantize_row_iq1_m_impl) wrote for the same rows and weights, in llama.cpp
// 3.22.1 (libggml-base built -O3 for x86-64 without FMA).
TEST_CASE("IQ2 / IQ1 quantizers are byte-identical to ggml's quantize_row_iq*_impl") {
  using namespace moe::quant_detail;
  CHECK(quantized_hash<moe::BlockIQ2_XXS>(quantize_row_iq2_xxs, false) == 0x2370adafe24d42d9ull);
  CHECK(quantized_hash<moe::BlockIQ2_XS>(quantize_row_iq2_xs, false) == 0x106638de4d59c797ull);
  CHECK(quantized_hash<moe::BlockIQ2_S>(quantize_row_iq2_s, true) == 0x87342c0d43ba8c85ull);
  CHECK(quantized_hash<moe::BlockIQ1_S>(quantize_row_iq1_s, false) == 0x9613ddd8b43eda68ull);
  CHECK(quantized_hash<moe::BlockIQ1_M>(quantize_row_iq1_m, true) == 0x855c3e54c32a4208ull);
}

TEST_CASE("IQ2 / IQ1 quantizers: dequantized rows stay near the input") {
  using namespace moe::quant_detail;
  // ggml's own output (the same bytes) has 0.318, 0.255, 0.221, 0.374 and
  // 0.366 here; the bounds add about 10%. Bits per weight: 2.06, 2.31, 2.56,
  // 1.56, 1.75.
  CHECK(relative_rms_error<moe::BlockIQ2_XXS>(GgmlType::IQ2_XXS, quantize_row_iq2_xxs) < 0.35);
  CHECK(relative_rms_error<moe::BlockIQ2_XS>(GgmlType::IQ2_XS, quantize_row_iq2_xs) < 0.28);
  CHECK(relative_rms_error<moe::BlockIQ2_S>(GgmlType::IQ2_S, quantize_row_iq2_s) < 0.25);
  CHECK(relative_rms_error<moe::BlockIQ1_S>(GgmlType::IQ1_S, quantize_row_iq1_s) < 0.42);
  CHECK(relative_rms_error<moe::BlockIQ1_M>(GgmlType::IQ1_M, quantize_row_iq1_m) < 0.41);
}
