// The AVX-512 kernel of gemm_f32.h. Built with AVX-512F flags for this file
// only; chosen at run time when the CPU has them.
#include "cpu/gemm_f32.h"

#include "cpu/matmul.h"
#include "cpu/qdot.h"

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

#include <algorithm>

#include "cpu/lanes_avx512.h"

namespace moe {
namespace {

constexpr int kTileRows = 8;   // rows of A broadcast per step
constexpr int kTileCols = 32;  // columns of B loaded per step (two vectors)

// C[i0 .. i0+8)[j0 .. j0+32): 2 loads of B and 8 broadcasts of A per 16
// fused multiply-adds. Rows past m repeat the last row and are not stored.
template <bool kMasked>
void tile(const GemmF32Args& g, int64_t i0, int64_t j0) {
  const __mmask16 k0 = lanes(g.n - j0), k1 = lanes(g.n - j0 - 16);
  const float* a[kTileRows];
  for (int r = 0; r < kTileRows; ++r) a[r] = g.a + std::min<int64_t>(i0 + r, g.m - 1) * g.lda;
  __m512 acc0[kTileRows], acc1[kTileRows];
  for (int r = 0; r < kTileRows; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  const float* b = g.b + j0;
  for (int64_t k = 0; k < g.k; ++k, b += g.ldb) {
    const __m512 b0 = load16<kMasked>(k0, b), b1 = load16<kMasked>(k1, b + 16);
    for (int r = 0; r < kTileRows; ++r) {
      const __m512 x = _mm512_set1_ps(a[r][k]);
      acc0[r] = _mm512_fmadd_ps(x, b0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(x, b1, acc1[r]);
    }
  }
  const int64_t rows = std::min<int64_t>(kTileRows, g.m - i0);
  for (int64_t r = 0; r < rows; ++r) {
    float* c = g.c + (i0 + r) * g.ldc + j0;
    _mm512_mask_storeu_ps(c, k0, acc0[r]);
    _mm512_mask_storeu_ps(c + 16, k1, acc1[r]);
  }
}

// Column panels outer: a panel of B (k x 32) stays in L2 while every row
// tile of A passes.
void gemm_f32_avx512(const GemmF32Args& g) {
  if (g.m <= 0 || g.n <= 0) return;
  for (int64_t j0 = 0; j0 < g.n; j0 += kTileCols)
    for (int64_t i0 = 0; i0 < g.m; i0 += kTileRows) {
      if (j0 + kTileCols <= g.n)
        tile<false>(g, i0, j0);
      else
        tile<true>(g, i0, j0);
    }
}

}  // namespace

GemmF32Fn gemm_f32_kernel() { return cpu_isa_active() == CpuIsa::kAvx512Vnni ? gemm_f32_avx512 : nullptr; }

}  // namespace moe
#else
namespace moe {
GemmF32Fn gemm_f32_kernel() { return nullptr; }
}  // namespace moe
#endif
