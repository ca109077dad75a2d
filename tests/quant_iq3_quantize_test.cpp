// IQ3_XXS and IQ3_S quantization (quantize_iq3.cpp): byte identity with
// ggml, by hashes of what ggml's quantize_iq3_xxs / quantize_iq3_s
// (ggml_quantize_chunk, llama.cpp 3.22.1) wrote for the same deterministic
// rows, with and without an importance matrix; and a dequantization sanity
// check.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/ggml_type.h"
#include "quant/blocks_iq.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "test_util.h"

using namespace moe;

namespace {

// A self-contained generator, so the inputs (and the hashes) do not depend
// on the standard library's distributions.
struct XorShift64 {
  uint64_t s;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }  // [0, 1)
  float symmetric() { return 2 * uniform() - 1; }                                       // [-1, 1)
};

constexpr int kRows = 6;
constexpr int kPerRow = 512;

// Six rows: roughly normal; small with one outlier; a zero 32-group in every
// four; below IQ3_XXS's group threshold (1e-8); all zero; heavy tails.
std::vector<float> make_input() {
  XorShift64 r{0x9e3779b97f4a7c15ull};
  std::vector<float> x(kRows * kPerRow);
  for (int row = 0; row < kRows; ++row) {
    float* xr = x.data() + row * kPerRow;
    for (int i = 0; i < kPerRow; ++i) {
      const float g = r.symmetric() + r.symmetric() + r.symmetric();  // roughly normal
      switch (row) {
        case 0: xr[i] = g; break;
        case 1: xr[i] = 1e-3f * g; break;
        case 2: xr[i] = (i / 32) % 4 == 1 ? 0.0f : g; break;  // a zero group in every four
        case 3: xr[i] = 1e-9f * g; break;                      // below IQ3_XXS's group threshold
        case 4: xr[i] = 0.0f; break;
        default: { const float u = r.symmetric(); xr[i] = 10 * u * u * u; }  // heavy tails
      }
    }
  }
  x[1 * kPerRow + 77] = 0.5f;  // an outlier in the small row
  return x;
}

// Importance: positive, every seventh zero, and one whole group zero.
std::vector<float> make_weights() {
  XorShift64 r{0x2545f4914f6cdd1dull};
  std::vector<float> w(kPerRow);
  for (int i = 0; i < kPerRow; ++i) w[i] = i % 7 == 3 ? 0.0f : r.uniform() + 0.01f;
  for (int i = 288; i < 320; ++i) w[i] = 0.0f;  // one group without importance
  return w;
}

template <typename Block>
std::vector<uint8_t> quantize_all(void (*fn)(const float*, Block*, int64_t, const float*), const std::vector<float>& x,
                                  const float* w) {
  constexpr int kBlocksPerRow = kPerRow / Block::kElements;
  std::vector<Block> blocks(kRows * kBlocksPerRow);
  for (int row = 0; row < kRows; ++row) fn(x.data() + row * kPerRow, blocks.data() + row * kBlocksPerRow, kPerRow, w);
  std::vector<uint8_t> bytes(blocks.size() * sizeof(Block));
  std::memcpy(bytes.data(), blocks.data(), bytes.size());
  return bytes;
}

// Relative RMS error of one dequantized row, weighted by the importance
// (elements ggml gives no weight may come out arbitrary) or unweighted.
double relative_error(GgmlType t, const uint8_t* row_bytes, const float* x, const float* w) {
  std::vector<float> y(kPerRow);
  dequantize_row_ref(t, row_bytes, y.data(), kPerRow);
  double err = 0, ref = 0;
  for (int i = 0; i < kPerRow; ++i) {
    const double wi = w ? w[i] : 1.0;
    err += wi * (y[i] - x[i]) * (y[i] - x[i]);
    ref += wi * x[i] * x[i];
  }
  return ref > 0 ? std::sqrt(err / ref) : std::sqrt(err);
}

void check_type(GgmlType t, const std::vector<uint8_t>& bytes, const std::vector<float>& x, const float* w) {
  const size_t row_bytes = bytes.size() / kRows;
  // Dense rows (0: normal, 5: heavy tails) at about 3 bits per weight come
  // back within 30% relative RMS (measured 12-25%).
  for (int row : {0, 5}) {
    CAPTURE(row);
    CHECK(relative_error(t, bytes.data() + row * row_bytes, x.data() + row * kPerRow, w) < 0.3);
  }
  // The zero row is all zero bytes (d = 0), so it decodes to zeros.
  for (size_t i = 4 * row_bytes; i < 5 * row_bytes; ++i) REQUIRE(bytes[i] == 0);
}

}  // namespace

TEST_CASE("IQ3_XXS quantization is ggml's, byte for byte") {
  const std::vector<float> x = make_input();
  const std::vector<float> w = make_weights();
  const std::vector<uint8_t> plain = quantize_all(quant_detail::quantize_row_iq3_xxs, x, nullptr);
  const std::vector<uint8_t> weighted = quantize_all(quant_detail::quantize_row_iq3_xxs, x, w.data());
  REQUIRE(plain.size() == static_cast<size_t>(kRows) * ggml_row_size(GgmlType::IQ3_XXS, kPerRow));
  // FNV-1a 64 of ggml_quantize_chunk(GGML_TYPE_IQ3_XXS, ...) on the same
  // rows (llama.cpp 3.22.1's quantize_iq3_xxs), imatrix null and w.
  CHECK(test::fnv1a64(plain.data(), plain.size()) == 0x7df4e929720714c2ull);
  CHECK(test::fnv1a64(weighted.data(), weighted.size()) == 0x5e43837f2bc1993aull);
  check_type(GgmlType::IQ3_XXS, plain, x, nullptr);
  check_type(GgmlType::IQ3_XXS, weighted, x, w.data());
}

TEST_CASE("IQ3_S quantization is ggml's, byte for byte") {
  const std::vector<float> x = make_input();
  const std::vector<float> w = make_weights();
  const std::vector<uint8_t> plain = quantize_all(quant_detail::quantize_row_iq3_s, x, nullptr);
  const std::vector<uint8_t> weighted = quantize_all(quant_detail::quantize_row_iq3_s, x, w.data());
  REQUIRE(plain.size() == static_cast<size_t>(kRows) * ggml_row_size(GgmlType::IQ3_S, kPerRow));
  // FNV-1a 64 of ggml_quantize_chunk(GGML_TYPE_IQ3_S, ...) on the same rows
  // (llama.cpp 3.22.1's quantize_iq3_s), imatrix null and w.
  CHECK(test::fnv1a64(plain.data(), plain.size()) == 0xdc7af529de6a30e8ull);
  CHECK(test::fnv1a64(weighted.data(), weighted.size()) == 0x627b009e966ef99cull);
  check_type(GgmlType::IQ3_S, plain, x, nullptr);
  check_type(GgmlType::IQ3_S, weighted, x, w.data());

  // ggml's quirk, reproduced: after an all-zero group the later groups'
  // indices and signs move up a slot, so with two zero groups per
  // super-block (row 2) the last two slots of qs and signs stay zero.
  for (const std::vector<uint8_t>* out : {&plain, &weighted}) {
    BlockIQ3_S b;
    for (int ib = 0; ib < kPerRow / 256; ++ib) {
      std::memcpy(&b, out->data() + (2 * kPerRow / 256 + ib) * sizeof b, sizeof b);
      for (int k = 48; k < 64; ++k) CHECK(b.qs[k] == 0);
      for (int k = 24; k < 32; ++k) CHECK(b.signs[k] == 0);
    }
  }
}
