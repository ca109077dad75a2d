// Q4_K rows interleaved four at a time (src/cpu/q4k_r4.h): the repack keeps
// every value, the scalar reference is the Q4_K product up to float order,
// and the AVX-512 kernel agrees with the reference.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/ggml_type.h"
#include "cpu/q4k_r4.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"
#include "test_util.h"

using namespace moe;

namespace {

struct Rows {
  int64_t n;
  size_t stride;
  std::vector<uint8_t> q4k;         // 4 rows of Q4_K
  std::vector<BlockQ4_KR4> r4;      // the same, interleaved
  std::vector<uint8_t> act;         // 2 tokens of Q8_K
};

Rows make_rows(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  Rows x;
  x.n = n;
  x.stride = ggml_row_size(GgmlType::Q4_K, n);
  x.q4k = test::random_weights(GgmlType::Q4_K, 4 * n, rng);
  x.r4.resize(static_cast<size_t>(n / 256));
  repack_q4_k_r4(x.q4k.data(), x.stride, n, x.r4.data());
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t act_row = ggml_row_size(GgmlType::Q8_K, n);
  x.act.resize(2 * act_row);
  for (int t = 0; t < 2; ++t) {
    std::vector<float> a(static_cast<size_t>(n));
    for (float& v : a) v = normal(rng);
    quantize_activation_row(GgmlType::Q8_K, a.data(), x.act.data() + t * act_row, n);
  }
  return x;
}

const BlockQ8_K* token(const Rows& x, int t) {
  return reinterpret_cast<const BlockQ8_K*>(x.act.data() + t * ggml_row_size(GgmlType::Q8_K, x.n));
}

}  // namespace

TEST_CASE("q4_k_r4: the interleaved rows hold every value of the four Q4_K rows") {
  for (const int64_t n : {256, 1024}) {
    const Rows x = make_rows(n, 3);
    for (int r = 0; r < 4; ++r) {
      std::vector<float> want(static_cast<size_t>(n)), got(want.size());
      dequantize_row_ref(GgmlType::Q4_K, x.q4k.data() + r * x.stride, want.data(), n);
      dequantize_q4_k_r4_row(x.r4.data(), r, n, got.data());
      for (int64_t i = 0; i < n; ++i) REQUIRE(std::memcmp(&want[size_t(i)], &got[size_t(i)], 4) == 0);
    }
  }
}

TEST_CASE("q4_k_r4: the reference product is Q4_K's, and the kernel the reference's, up to float order") {
  const Q4KR4DotFn fast = q4_k_r4_dot_kernel();
  for (const int64_t n : {256, 2048}) {
    const Rows x = make_rows(n, 5);
    const int64_t nb = n / 256;
    for (int t = 0; t < 2; ++t) {
      float ref[4];
      q4_k_r4_dot_ref(x.r4.data(), token(x, t), nb, ref);
      for (int r = 0; r < 4; ++r) {
        const float want = vec_dot_row(GgmlType::Q4_K, x.q4k.data() + r * x.stride, token(x, t), n);
        CHECK(std::fabs(ref[r] - want) <= 1e-5f * (1.0f + std::fabs(want)) * float(nb));
      }
    }
    if (!fast) continue;
    const BlockQ8_K* ys[2] = {token(x, 0), token(x, 1)};
    for (const int nt : {1, 2}) {
      std::vector<float> got(size_t(4 * nt));
      fast(x.r4.data(), ys, nt, nb, got.data());
      for (int t = 0; t < nt; ++t) {
        float ref[4];
        q4_k_r4_dot_ref(x.r4.data(), ys[t], nb, ref);
        for (int r = 0; r < 4; ++r) CHECK(std::fabs(got[size_t(4 * t + r)] - ref[r]) <= 1e-5f * (1.0f + std::fabs(ref[r])) * float(nb));
      }
    }
  }
  if (!fast) MESSAGE("no AVX-512 VNNI on this CPU: the kernel is not built for it");
}
