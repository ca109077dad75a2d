// The repacked GEMM (cpu/gemm_q8.h): the VNNI kernel equals its scalar
// reference bit for bit on every type it takes (random-byte blocks: every bit
// pattern), awkward row and token counts included; and both compute the
// product of the dequantized weights with the activations to within the
// activations' int8 rounding.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/ggml_type.h"
#include "cpu/gemm_q8.h"
#include "cpu/qdot.h"
#include "quant/dequantize.h"
#include "test_util.h"

using namespace moe;

namespace {

const GgmlType kTypes[] = {GgmlType::Q4_0,    GgmlType::Q4_1,   GgmlType::Q5_0,    GgmlType::Q5_1,    GgmlType::Q8_0,
                           GgmlType::Q2_K,    GgmlType::Q3_K,   GgmlType::Q4_K,    GgmlType::Q5_K,    GgmlType::Q6_K,
                           GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ2_S,   GgmlType::IQ3_XXS, GgmlType::IQ3_S,
                           GgmlType::IQ1_S,   GgmlType::IQ1_M,  GgmlType::IQ4_NL,  GgmlType::IQ4_XS,  GgmlType::MXFP4};

}  // namespace

TEST_CASE("gemm: the VNNI kernel equals the scalar reference bit for bit") {
  const GemmTileFn kernel = gemm_tile_kernel();
  if (!kernel) return test::skip("this CPU or build has no AVX-512 VNNI");
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int checked = 0;
  for (GgmlType t : kTypes) {
    CAPTURE(ggml_type_name(t));
    const int64_t n = 512, rows = 21;
    const std::vector<uint8_t> w = test::random_weights(t, rows * n, rng);
    const TensorView W = TensorView::contiguous("w", t, {n, rows, 1, 1}, w.data());
    for (int64_t toks : {1, 7, 8, 9, 17}) {
      const size_t stride = gemm_act_row_bytes(n);
      std::vector<uint8_t> act(stride * static_cast<size_t>(toks));
      std::vector<float> x(static_cast<size_t>(n));
      for (int64_t k = 0; k < toks; ++k) {
        for (float& v : x) v = normal(rng) * (rng() % 16 == 0 ? 20.0f : 1.0f);
        gemm_quantize_row(t, x.data(), n, act.data() + stride * static_cast<size_t>(k));
      }
      const int64_t ys = rows + 2;
      std::vector<float> want(static_cast<size_t>(toks * ys), -1.0f), got(want);
      GemmTile tile;
      for (int64_t r0 = 0; r0 < rows; r0 += kGemmRows) {
        const int64_t nr = std::min<int64_t>(kGemmRows, rows - r0);
        gemm_repack(W, r0, nr, tile);
        gemm_tile_ref(tile, nr, act.data(), stride, toks, want.data() + r0, ys);
        kernel(tile, nr, act.data(), stride, toks, got.data() + r0, ys);
      }
      for (size_t i = 0; i < want.size(); ++i) {
        if (std::memcmp(&want[i], &got[i], 4) != 0) {
          FAIL_CHECK("toks=" << toks << " i=" << i << ": " << got[i] << " != " << want[i]);
          return;
        }
        ++checked;
      }
    }
  }
  MESSAGE(checked << " outputs equal the reference");
}

TEST_CASE("gemm: the fast activation quantizer writes the scalar one's bytes") {
  std::mt19937 rng(29);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (GgmlType t : kTypes) {  // their partners: Q8_0, Q8_1 and Q8_K
    CAPTURE(ggml_type_name(t));
    const int64_t n = 1024;
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = normal(rng) * (rng() % 8 == 0 ? 30.0f : 1.0f);
    std::fill(x.begin(), x.begin() + 256, 0.0f);  // an all-zero block
    x[300] = 40.0f, x[301] = -40.0f;               // a tie in magnitude: the first one's sign wins
    x[600] = -50.0f, x[700] = 50.0f;
    for (int64_t i = 800; i < 832; ++i) x[static_cast<size_t>(i)] = 0.5f * static_cast<float>(i - 816);  // halves
    std::vector<uint8_t> want(gemm_act_row_bytes(n)), got(want.size());
    gemm_quantize_row_ref(t, x.data(), n, want.data());
    gemm_quantize_row(t, x.data(), n, got.data());
    CHECK(want == got);
  }
}

TEST_CASE("gemm: the fast repack writes the scalar repack's bytes") {
  std::mt19937 rng(19);
  for (GgmlType t : kTypes) {
    CAPTURE(ggml_type_name(t));
    // 352 elements: a transpose's 64 and a tail of 32 (types with 32-element blocks).
    const int64_t n = gemm_format(t).super == 32 ? 352 : 768, rows = 21;
    const std::vector<uint8_t> w = test::random_weights(t, rows * n, rng);
    const TensorView W = TensorView::contiguous("w", t, {n, rows, 1, 1}, w.data());
    GemmTile want, got;
    for (int64_t r0 = 0; r0 < rows; r0 += kGemmRows) {
      const int64_t nr = std::min<int64_t>(kGemmRows, rows - r0);
      gemm_repack_ref(W, r0, nr, want);
      gemm_repack(W, r0, nr, got);
      CHECK(got.vals == want.vals);
      CHECK(got.sc == want.sc);
      CHECK(got.mn == want.mn);
      CHECK(std::memcmp(got.d.data(), want.d.data(), want.d.size() * 4) == 0);
      CHECK(std::memcmp(got.dm.data(), want.dm.data(), want.dm.size() * 4) == 0);
      CHECK(got.d.size() == want.d.size());
      CHECK(got.dm.size() == want.dm.size());
    }
  }
}

TEST_CASE("gemm: the product is the dequantized weights times the activations") {
  std::mt19937 rng(23);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (GgmlType t : kTypes) {
    CAPTURE(ggml_type_name(t));
    const int64_t n = 256, rows = 11, toks = 5;
    const std::vector<uint8_t> w = test::random_weights(t, rows * n, rng);
    const TensorView W = TensorView::contiguous("w", t, {n, rows, 1, 1}, w.data());
    std::vector<float> wf(static_cast<size_t>(rows * n));
    dequantize_row_ref(t, w.data(), wf.data(), rows * n);
    const size_t stride = gemm_act_row_bytes(n);
    std::vector<uint8_t> act(stride * toks);
    std::vector<float> x(static_cast<size_t>(toks * n));
    for (float& v : x) v = normal(rng);
    for (int64_t k = 0; k < toks; ++k) gemm_quantize_row(t, &x[static_cast<size_t>(k * n)], n, act.data() + stride * k);
    std::vector<float> y(static_cast<size_t>(toks * rows));
    GemmTile tile;
    gemm_rows(W, 0, rows, act.data(), stride, toks, y.data(), rows, tile);
    for (int64_t k = 0; k < toks; ++k)
      for (int64_t r = 0; r < rows; ++r) {
        double exact = 0, mag = 0;
        for (int64_t i = 0; i < n; ++i) {
          exact += static_cast<double>(wf[static_cast<size_t>(r * n + i)]) * x[static_cast<size_t>(k * n + i)];
          mag += std::fabs(static_cast<double>(wf[static_cast<size_t>(r * n + i)])) * std::fabs(x[static_cast<size_t>(k * n + i)]);
        }
        // int8 activations: each element off by at most half a step of its block.
        CHECK(std::fabs(y[static_cast<size_t>(k * rows + r)] - exact) <= 0.01 * mag + 1e-6);
      }
  }
}
