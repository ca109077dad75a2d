// Dot products against quantized activations: every weight type equals the
// sum of its dequantized weights times the dequantized activations (the
// integer block arithmetic loses nothing but the float rounding), and the
// activation quantizers round as ggml's CPU path does.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/dequantize.h"
#include "quant/vec_dot.h"
#include "test_util.h"

using namespace moe;

TEST_CASE("vec_dot_row equals the dot product of the dequantized rows, for every weight type") {
  std::mt19937 rng(7);
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
                     GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K,
                     GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_K, GgmlType::MXFP4}) {
    for (int64_t blocks : {1, 3, 11}) {
      const int64_t n = blocks * (ggml_type_traits(t).block_size == 1 ? 32 : ggml_type_traits(t).block_size);
      CAPTURE(ggml_type_name(t));
      CAPTURE(n);
      const auto w = test::random_weights(t, n, rng);
      std::vector<float> x(static_cast<size_t>(n));
      std::normal_distribution<float> nd;
      for (auto& v : x) v = nd(rng);
      const GgmlType at = vec_dot_type(t);
      std::vector<uint8_t> a(ggml_row_size(at, n));
      quantize_activation_row(at, x.data(), a.data(), n);
      std::vector<float> wf(static_cast<size_t>(n)), af(static_cast<size_t>(n));
      dequantize_row_ref(t, w.data(), wf.data(), n);
      dequantize_row_ref(at, a.data(), af.data(), n);
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) ref += double(wf[size_t(i)]) * af[size_t(i)], mag += std::fabs(double(wf[size_t(i)]) * af[size_t(i)]);
      const float got = vec_dot_row(t, w.data(), a.data(), n);
      // Q4_1/Q5_1 use the activation block's fp16 sum s = d * sum(q): one fp16 rounding per block.
      const double tol = (t == GgmlType::Q4_1 || t == GgmlType::Q5_1 ? 2e-3 : 1e-5) * mag + 1e-6;
      CHECK(std::fabs(got - ref) <= tol);
    }
  }
}

TEST_CASE("activation quantizers: scale from the largest magnitude, round half to even") {
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;  // d = 1, so q = round(x)
  x[1] = 2.5f;    // tie: to even -> 2
  x[2] = -3.5f;   // tie: to even -> -4
  x[3] = 0.49f;
  BlockQ8_0 q0;
  quantize_activation_row(GgmlType::Q8_0, x.data(), &q0, 32);
  CHECK(fp16_to_fp32(q0.d) == 1.0f);
  CHECK(q0.qs[0] == 127);
  CHECK(q0.qs[1] == 2);
  CHECK(q0.qs[2] == -4);
  CHECK(q0.qs[3] == 0);
  BlockQ8_1 q1;
  quantize_activation_row(GgmlType::Q8_1, x.data(), &q1, 32);
  CHECK(fp16_to_fp32(q1.s) == 127.0f + 2 - 4);

  // Q8_K: the value of largest magnitude maps to -127 * sign; bsums are sums of 16.
  std::vector<float> y(256);
  for (int i = 0; i < 256; ++i) y[size_t(i)] = static_cast<float>((i % 17) - 8) * 0.25f;
  y[5] = -4.0f;
  BlockQ8_K qk;
  quantize_activation_row(GgmlType::Q8_K, y.data(), &qk, 256);
  CHECK(qk.qs[5] == -127);
  CHECK(qk.d == doctest::Approx(4.0f / 127.0f));
  for (int j = 0; j < 16; ++j) {
    int s = 0;
    for (int k = 0; k < 16; ++k) s += qk.qs[j * 16 + k];
    CHECK(qk.bsums[j] == s);
  }
  std::vector<float> zeros(256, 0.0f);
  quantize_activation_row(GgmlType::Q8_K, zeros.data(), &qk, 256);
  CHECK(qk.d == 0.0f);
  CHECK_THROWS(quantize_activation_row(GgmlType::Q8_0, x.data(), &q0, 31));
  CHECK_THROWS(vec_dot_type(GgmlType::TQ2_0));
}
