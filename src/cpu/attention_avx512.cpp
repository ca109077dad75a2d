// The AVX-512 kernel of attention_block.h. Built with AVX-512F flags for
// this file only; chosen at run time when the CPU has them.
#include "cpu/attention_block.h"

#include <algorithm>

#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "cpu/qdot.h"

namespace moe {

namespace {
constexpr int64_t kKeyBlock = 32;  // cached rows per block of scores (two zmm of floats)
constexpr int kRowTile = 8;        // query rows per tile: 16 accumulators
int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
}  // namespace

size_t mla_attend_block_scratch_floats(int64_t n_tok, int64_t n_heads, int64_t n_kv0, int64_t dim_qk) {
  const int64_t ld = round_up(n_kv0 + n_tok - 1, kKeyBlock);
  return static_cast<size_t>(n_tok * n_heads * ld + dim_qk * kKeyBlock) + 16;
}

}  // namespace moe

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

namespace moe {
namespace {

inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << n) - 1);
}

void attend_block_avx512(const MlaAttendBlockArgs& a) {
  const int64_t H = a.n_heads, M = a.n_tok * H;
  const int64_t n_kv_max = a.n_kv0 + a.n_tok - 1;
  const int64_t ld = round_up(n_kv_max, kKeyBlock);
  float* S = a.scratch;                       // scores [M][ld]
  float* keys = S + M * ld;                   // one block of keys transposed [dim_qk][32]
  const auto q_row = [&](int64_t m) { return a.q + (m / H) * a.q_tok_stride + (m % H) * a.q_head_stride; };
  const auto n_kv = [&](int64_t m) { return a.n_kv0 + m / H; };

  // Scores: S[m][s] = scale * q[m] . kv[s], per block of 32 cached rows.
  const __m512 scale = _mm512_set1_ps(a.scale);
  for (int64_t s0 = 0; s0 < n_kv_max; s0 += kKeyBlock) {
    const int64_t nk = std::min(kKeyBlock, n_kv_max - s0);
    for (int64_t j = 0; j < kKeyBlock; ++j) {
      const float* row = a.kv + (s0 + std::min(j, nk - 1)) * a.kv_stride;  // past the end: a copy, never used
      for (int64_t k = 0; k < a.dim_qk; ++k) keys[k * kKeyBlock + j] = row[k];
    }
    // Rows whose tokens see none of this block are skipped.
    const int64_t m_first = std::max<int64_t>(0, s0 - a.n_kv0 + 1) * H;
    for (int64_t m0 = m_first; m0 < M; m0 += kRowTile) {
      const int64_t mr = std::min<int64_t>(kRowTile, M - m0);
      const float* A[kRowTile];
      for (int r = 0; r < kRowTile; ++r) A[r] = q_row(m0 + std::min<int64_t>(r, mr - 1));
      __m512 acc0[kRowTile], acc1[kRowTile];
      for (int r = 0; r < kRowTile; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
      for (int64_t k = 0; k < a.dim_qk; ++k) {
        const __m512 b0 = _mm512_loadu_ps(keys + k * kKeyBlock), b1 = _mm512_loadu_ps(keys + k * kKeyBlock + 16);
        for (int r = 0; r < kRowTile; ++r) {
          const __m512 x = _mm512_set1_ps(A[r][k]);
          acc0[r] = _mm512_fmadd_ps(x, b0, acc0[r]);
          acc1[r] = _mm512_fmadd_ps(x, b1, acc1[r]);
        }
      }
      for (int64_t r = 0; r < mr; ++r) {
        float* s = S + (m0 + r) * ld + s0;
        _mm512_storeu_ps(s, _mm512_mul_ps(acc0[r], scale));
        _mm512_storeu_ps(s + 16, _mm512_mul_ps(acc1[r], scale));
      }
    }
  }

  // Probabilities over each row's own keys; zeros after them, so the value
  // sums can run over a tile's longest row.
  for (int64_t m = 0; m < M; ++m) {
    float* s = S + m * ld;
    softmax_inplace(s, n_kv(m));
    std::fill(s + n_kv(m), s + ld, 0.0f);
  }

  // Values: out[m][c] = sum_s P[m][s] * kv[s][c], 8 rows by 32 columns per tile.
  for (int64_t m0 = 0; m0 < M; m0 += kRowTile) {
    const int64_t mr = std::min<int64_t>(kRowTile, M - m0);
    const int64_t ns = n_kv(m0 + mr - 1);
    const float* P[kRowTile];
    for (int r = 0; r < kRowTile; ++r) P[r] = S + (m0 + std::min<int64_t>(r, mr - 1)) * ld;
    for (int64_t c0 = 0; c0 < a.dim_v; c0 += 32) {
      const __mmask16 k0 = lanes(a.dim_v - c0), k1 = lanes(a.dim_v - c0 - 16);
      __m512 acc0[kRowTile], acc1[kRowTile];
      for (int r = 0; r < kRowTile; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
      for (int64_t s = 0; s < ns; ++s) {
        const float* v = a.kv + s * a.kv_stride + c0;
        const __m512 v0 = _mm512_maskz_loadu_ps(k0, v), v1 = _mm512_maskz_loadu_ps(k1, v + 16);
        for (int r = 0; r < kRowTile; ++r) {
          const __m512 p = _mm512_set1_ps(P[r][s]);
          acc0[r] = _mm512_fmadd_ps(p, v0, acc0[r]);
          acc1[r] = _mm512_fmadd_ps(p, v1, acc1[r]);
        }
      }
      for (int64_t r = 0; r < mr; ++r) {
        const int64_t m = m0 + r;
        float* o = a.out + (m / H) * a.out_tok_stride + (m % H) * a.out_head_stride + c0;
        _mm512_mask_storeu_ps(o, k0, acc0[r]);
        _mm512_mask_storeu_ps(o + 16, k1, acc1[r]);
      }
    }
  }
}

}  // namespace

MlaAttendBlockFn mla_attend_block_kernel() {
  return cpu_isa_active() == CpuIsa::kAvx512Vnni ? attend_block_avx512 : nullptr;
}

}  // namespace moe
#else
namespace moe {
MlaAttendBlockFn mla_attend_block_kernel() { return nullptr; }
}  // namespace moe
#endif
