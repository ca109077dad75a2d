// The f32 product kernel (cpu/gemm_f32.h) against its scalar reference:
// tiles cut short in rows and columns, strides wider than the rows.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "cpu/gemm_f32.h"
#include "test_util.h"

using namespace moe;

TEST_CASE("gemm f32: the AVX-512 kernel agrees with the scalar reference") {
  const GemmF32Fn gemm = gemm_f32_kernel();
  if (!gemm) return test::skip("this CPU or build has no AVX-512");
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  struct Shape { int64_t m, n, k; };
  for (const Shape sh : {Shape{64, 128, 512}, Shape{7, 33, 19}, Shape{1, 1, 1}, Shape{9, 16, 64}, Shape{17, 40, 3}}) {
    INFO("m=" << sh.m << " n=" << sh.n << " k=" << sh.k);
    const int64_t lda = sh.k + 5, ldb = sh.n + 7, ldc = sh.n + 3;
    std::vector<float> a(static_cast<size_t>(sh.m * lda)), b(static_cast<size_t>(sh.k * ldb));
    for (float& x : a) x = normal(rng);
    for (float& x : b) x = normal(rng);
    std::vector<float> want(static_cast<size_t>(sh.m * ldc), -1.0f), got = want;
    gemm_f32_ref({a.data(), lda, b.data(), ldb, want.data(), ldc, sh.m, sh.n, sh.k});
    gemm({a.data(), lda, b.data(), ldb, got.data(), ldc, sh.m, sh.n, sh.k});
    // Same order of k, products fused: each step rounds once instead of
    // twice, so a sum of k unit products moves by about k * 2^-24 of its
    // terms' size; bound 1e-6 * (k + 1) of sum |a||b|.
    double worst = 0.0;
    for (int64_t i = 0; i < sh.m; ++i)
      for (int64_t j = 0; j < ldc; ++j) {
        const size_t at = static_cast<size_t>(i * ldc + j);
        if (j >= sh.n) {
          CHECK(got[at] == -1.0f);  // past the columns: untouched
          continue;
        }
        double mag = 0.0;
        for (int64_t k = 0; k < sh.k; ++k) mag += std::fabs(double(a[i * lda + k]) * b[k * ldb + j]);
        const double err = std::fabs(double(got[at]) - want[at]) / (mag + 1e-30);
        worst = std::max(worst, err);
      }
    CHECK(worst <= 1e-6 * double(sh.k + 1));
  }
}
