// The AVX-512 kernels of attention_block.h. Built with AVX-512F flags for
// this file only; chosen at run time when the CPU has them.
#include "cpu/attention_block.h"

#include <algorithm>
#include <cmath>

#include "cpu/matmul.h"
#include "cpu/qdot.h"

namespace moe {

namespace {
// Cached rows per chunk: 128 query rows' scores of one chunk are 32 KiB
// (L1), and the running output is rescaled once per chunk (64 rows of
// 1088 multiply-adds per query row against 512 to rescale: under 1%).
constexpr int64_t kKeyChunk = 64;
}  // namespace

size_t mla_attend_block_scratch_floats(int64_t n_tok, int64_t n_heads, int64_t dim_v) {
  const int64_t rows = n_tok * n_heads;
  return static_cast<size_t>(rows * kKeyChunk) + mla_attend_state_floats(rows, dim_v);
}

}  // namespace moe

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

namespace moe {
namespace {

constexpr int kRowTile = 8;  // query rows per output tile: 16 accumulators

inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << n) - 1);
}

// e^x to about 1 ulp (Cephes' expf polynomial on x - n ln 2, scaled by 2^n);
// -inf and anything below -104 give 0.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_maskz_min_ps(0xFFFF, _mm512_maskz_max_ps(0xFFFF, x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.7f));
  const __m512 n = _mm512_maskz_roundscale_ps(0xFFFF, _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_scalef_ps(0xFFFF, p, n);
}

// One step of a transposed reduction: lanes in m take b's, the others a's,
// each the sum of itself and its partner d lanes away (swap()).
template <typename Swap>
inline __m512 fold(__m512 a, __m512 b, __mmask16 m, Swap swap) {
  return _mm512_add_ps(_mm512_mask_blend_ps(m, a, b), swap(_mm512_mask_blend_ps(m, b, a)));
}

// Lane i of the result = the sum of the 16 lanes of v[bitrev4(i)]: four
// folds (distances 8, 4, 2, 1) reduce 16 vectors in 15 adds, where
// reducing each alone takes 16 x 4.
inline __m512 reduce16_bitrev(const __m512 v[16]) {
  const auto d8 = [](__m512 u) { return _mm512_maskz_shuffle_f32x4(0xFFFF, u, u, _MM_SHUFFLE(1, 0, 3, 2)); };
  const auto d4 = [](__m512 u) { return _mm512_maskz_shuffle_f32x4(0xFFFF, u, u, _MM_SHUFFLE(2, 3, 0, 1)); };
  const auto d2 = [](__m512 u) { return _mm512_maskz_permute_ps(0xFFFF, u, _MM_SHUFFLE(1, 0, 3, 2)); };
  const auto d1 = [](__m512 u) { return _mm512_maskz_permute_ps(0xFFFF, u, _MM_SHUFFLE(2, 3, 0, 1)); };
  __m512 r8[8], r4[4], r2[2];
  for (int k = 0; k < 8; ++k) r8[k] = fold(v[2 * k], v[2 * k + 1], 0xFF00, d8);
  for (int k = 0; k < 4; ++k) r4[k] = fold(r8[2 * k], r8[2 * k + 1], 0xF0F0, d4);
  for (int k = 0; k < 2; ++k) r2[k] = fold(r4[2 * k], r4[2 * k + 1], 0xCCCC, d2);
  return fold(r2[0], r2[1], 0xAAAA, d1);
}

// Scores of 4 query rows against 4 cached rows: 16 accumulators, 8 loads
// per 16 fused multiply-adds; out[r][c] = scale * q[r] . k[c].
void score_tile(const float* const q[4], const float* const k[4], int64_t dim, float scale, float* const out[4]) {
  __m512 acc[16];
  for (__m512& v : acc) v = _mm512_setzero_ps();
  // acc[bitrev4(r * 4 + c)] holds the pair (r, c), so that the reduction
  // leaves pair (r, c) in lane r * 4 + c.
  constexpr int kSlot[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};
  for (int64_t i = 0; i < dim; i += 16) {
    const __mmask16 m = lanes(dim - i);
    __m512 kv[4];
    for (int c = 0; c < 4; ++c) kv[c] = _mm512_maskz_loadu_ps(m, k[c] + i);
    for (int r = 0; r < 4; ++r) {
      const __m512 x = _mm512_maskz_loadu_ps(m, q[r] + i);
      for (int c = 0; c < 4; ++c) acc[kSlot[r * 4 + c]] = _mm512_fmadd_ps(x, kv[c], acc[kSlot[r * 4 + c]]);
    }
  }
  const __m512 s = _mm512_mul_ps(reduce16_bitrev(acc), _mm512_set1_ps(scale));
  _mm_storeu_ps(out[0], _mm512_maskz_extractf32x4_ps(0xF, s, 0));
  _mm_storeu_ps(out[1], _mm512_maskz_extractf32x4_ps(0xF, s, 1));
  _mm_storeu_ps(out[2], _mm512_maskz_extractf32x4_ps(0xF, s, 2));
  _mm_storeu_ps(out[3], _mm512_maskz_extractf32x4_ps(0xF, s, 3));
}

// Horizontal max and sum (GCC 12's _mm512_reduce_* warn about undefined
// lanes; these take the halves through masked extracts).
inline float hmax(__m512 v) {
  const __m512d vd = _mm512_castps_pd(v);
  const __m256 h8 = _mm256_max_ps(_mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, vd, 0)),
                                  _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, vd, 1)));
  const __m128 h4 = _mm_max_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_max_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_max_ss(h2, _mm_movehdup_ps(h2)));
}
inline float hsum(__m512 v) {
  const __m512d vd = _mm512_castps_pd(v);
  const __m256 h8 = _mm256_add_ps(_mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, vd, 0)),
                                  _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, vd, 1)));
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

// Cached rows [c0, c1) (at most kKeyChunk) into the running state of every
// row that sees c0. S: scores, [rows][kKeyChunk].
void attend_chunk(const MlaAttendBlockArgs& a, int64_t c0, int64_t c1, const MlaAttendState& st, float* S) {
  const int64_t H = a.n_heads, M = a.n_tok * H, V = a.dim_v, C = kKeyChunk;
  const int64_t cn = c1 - c0;
  const auto n_kv = [&](int64_t m) { return a.n_kv0 + m / H; };
  const int64_t m_first = std::max<int64_t>(0, c0 - a.n_kv0 + 1) * H;  // rows that see c0
  if (m_first >= M) return;
  const auto q_row = [&](int64_t m) { return a.q + (m / H) * a.q_tok_stride + (m % H) * a.q_head_stride; };

  // Scores, keys outer so 4 cached rows stay in L1 while every row tile
  // passes; rows past M and keys past c1 read valid rows and are dropped.
  for (int64_t s = 0; s < cn; s += 4) {
    const float* k[4];
    for (int c = 0; c < 4; ++c) k[c] = a.kv + (c0 + std::min<int64_t>(s + c, cn - 1)) * a.kv_stride;
    for (int64_t m0 = m_first; m0 < M; m0 += 4) {
      const float* q[4];
      float spare[4][4];
      float* out[4];
      for (int r = 0; r < 4; ++r) {
        q[r] = q_row(std::min(m0 + r, M - 1));
        out[r] = m0 + r < M ? S + (m0 + r) * C + s : spare[r];
      }
      score_tile(q, k, a.dim_qk, a.scale, out);
    }
  }

  // Running softmax: each row's scores over its own keys become e^(s - max),
  // zeros after them (the value tiles run over their longest row); the
  // state's sum and output are rescaled to the new maximum.
  const int64_t cn16 = (cn + 15) / 16 * 16;
  for (int64_t m = m_first; m < M; ++m) {
    float* s = S + m * C;
    const int64_t valid = std::min(cn, n_kv(m) - c0);
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < valid; i += 16)
      vmax = _mm512_mask_max_ps(vmax, lanes(valid - i), vmax, _mm512_loadu_ps(s + i));
    const float old = st.max[m], mx = std::max(old, hmax(vmax));
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t i = 0; i < cn16; i += 16) {
      const __mmask16 k = lanes(valid - i);
      const __m512 p = _mm512_maskz_mov_ps(k, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), vmx)));
      _mm512_storeu_ps(s + i, p);
      vsum = _mm512_add_ps(vsum, p);
    }
    const float alpha = std::exp(old - mx);  // 0 for the first chunk (old = -inf)
    st.sum[m] = st.sum[m] * alpha + hsum(vsum);
    st.max[m] = mx;
    if (alpha != 1.0f && old != -INFINITY) {
      float* o = st.o + m * V;
      const __m512 va = _mm512_set1_ps(alpha);
      for (int64_t c = 0; c < V; c += 16) {
        const __mmask16 k = lanes(V - c);
        _mm512_mask_storeu_ps(o + c, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, o + c), va));
      }
    }
  }

  // Values: o[m][c] += sum_s p[m][s] * kv[c0 + s][c], 8 rows by 32 columns
  // per tile, the value rows read once per tile.
  for (int64_t m0 = m_first; m0 < M; m0 += kRowTile) {
    const int64_t mr = std::min<int64_t>(kRowTile, M - m0);
    const int64_t ns = std::min(cn, n_kv(m0 + mr - 1) - c0);
    const float* P[kRowTile];
    for (int r = 0; r < kRowTile; ++r) P[r] = S + (m0 + std::min<int64_t>(r, mr - 1)) * C;
    for (int64_t c = 0; c < V; c += 32) {
      const __mmask16 k0 = lanes(V - c), k1 = lanes(V - c - 16);
      __m512 acc0[kRowTile], acc1[kRowTile];
      for (int r = 0; r < kRowTile; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
      const float* v = a.kv + c0 * a.kv_stride + c;
      for (int64_t s = 0; s < ns; ++s, v += a.kv_stride) {
        const __m512 v0 = _mm512_maskz_loadu_ps(k0, v), v1 = _mm512_maskz_loadu_ps(k1, v + 16);
        for (int r = 0; r < kRowTile; ++r) {
          const __m512 p = _mm512_set1_ps(P[r][s]);
          acc0[r] = _mm512_fmadd_ps(p, v0, acc0[r]);
          acc1[r] = _mm512_fmadd_ps(p, v1, acc1[r]);
        }
      }
      for (int64_t r = 0; r < mr; ++r) {
        float* o = st.o + (m0 + r) * V + c;
        _mm512_mask_storeu_ps(o, k0, _mm512_add_ps(_mm512_maskz_loadu_ps(k0, o), acc0[r]));
        _mm512_mask_storeu_ps(o + 16, k1, _mm512_add_ps(_mm512_maskz_loadu_ps(k1, o + 16), acc1[r]));
      }
    }
  }
}

void attend_range_avx512(const MlaAttendBlockArgs& a, int64_t s0, int64_t s1, const MlaAttendState& st) {
  for (int64_t c0 = s0; c0 < s1; c0 += kKeyChunk) attend_chunk(a, c0, std::min(s1, c0 + kKeyChunk), st, a.scratch);
}

void attend_block_avx512(const MlaAttendBlockArgs& a) {
  const int64_t M = a.n_tok * a.n_heads;
  const MlaAttendState st = mla_attend_state_carve(a.scratch + M * kKeyChunk, M, a.dim_v);
  mla_attend_state_init(st, M, a.dim_v);
  attend_range_avx512(a, 0, a.n_kv0 + a.n_tok - 1, st);
  mla_attend_merge(a, &st, 1);
}

}  // namespace

MlaAttendBlockFn mla_attend_block_kernel() {
  return cpu_isa_active() == CpuIsa::kAvx512Vnni ? attend_block_avx512 : nullptr;
}
MlaAttendRangeFn mla_attend_range_kernel() {
  return cpu_isa_active() == CpuIsa::kAvx512Vnni ? attend_range_avx512 : nullptr;
}

}  // namespace moe
#else
namespace moe {
MlaAttendBlockFn mla_attend_block_kernel() { return nullptr; }
MlaAttendRangeFn mla_attend_range_kernel() { return nullptr; }
}  // namespace moe
#endif
