// The AVX-512 kernel of attention_block.h. Built with AVX-512F flags for
// this file only; chosen at run time when the CPU has them.
#include "cpu/attention_block.h"

#include <algorithm>

#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "cpu/qdot.h"

namespace moe {

namespace {
constexpr int64_t kKeyBlock = 32;  // cached rows per block of scores
constexpr int kRowTile = 8;        // query rows per tile: 16 accumulators
int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
}  // namespace

size_t mla_attend_block_scratch_floats(int64_t n_tok, int64_t n_heads, int64_t n_kv0, int64_t dim_qk) {
  const int64_t ld = round_up(n_kv0 + n_tok - 1, kKeyBlock);
  return static_cast<size_t>(n_tok * n_heads * ld);
}

}  // namespace moe

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

namespace moe {
namespace {

inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << n) - 1);
}

// dot_f32's reduction of its 16 partial sums: halves added pairwise.
inline float reduce_pairwise(__m512 v) {
  // (AVX-512F only: the halves through the f64 extract, zero-masked, which
  // also keeps GCC 12 from warning about _mm512_castps512_ps256.)
  const __m512d vd = _mm512_castps_pd(v);
  const __m256 h8 = _mm256_add_ps(_mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, vd, 0)),
                                  _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, vd, 1)));
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

// Scores of 4 query rows against 4 cached rows: one 16-lane partial sum per
// pair, as dot_f32 keeps them (products then sums, not fused), so each score
// equals dot_f32(q, kv) * scale to the bit; 8 loads feed 16 products.
void score_tile(const float* const q[4], const float* const k[4], int64_t dim, float scale, float* out[4]) {
  __m512 acc[4][4];
  for (auto& row : acc)
    for (__m512& v : row) v = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= dim; i += 16) {
    __m512 kv[4];
    for (int c = 0; c < 4; ++c) kv[c] = _mm512_loadu_ps(k[c] + i);
    for (int r = 0; r < 4; ++r) {
      const __m512 x = _mm512_loadu_ps(q[r] + i);
      for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_add_ps(acc[r][c], _mm512_mul_ps(x, kv[c]));
    }
  }
  if (i < dim) {  // the tail goes into the first lanes, the others unchanged
    const __mmask16 m = static_cast<__mmask16>((1u << (dim - i)) - 1);
    __m512 kv[4];
    for (int c = 0; c < 4; ++c) kv[c] = _mm512_maskz_loadu_ps(m, k[c] + i);
    for (int r = 0; r < 4; ++r) {
      const __m512 x = _mm512_maskz_loadu_ps(m, q[r] + i);
      for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_mask_add_ps(acc[r][c], m, acc[r][c], _mm512_mul_ps(x, kv[c]));
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) out[r][c] = reduce_pairwise(acc[r][c]) * scale;
}

void attend_block_avx512(const MlaAttendBlockArgs& a) {
  const int64_t H = a.n_heads, M = a.n_tok * H;
  const int64_t n_kv_max = a.n_kv0 + a.n_tok - 1;
  const int64_t ld = round_up(n_kv_max, kKeyBlock);
  float* S = a.scratch;  // scores [M][ld]
  const auto q_row = [&](int64_t m) { return a.q + (m / H) * a.q_tok_stride + (m % H) * a.q_head_stride; };
  const auto n_kv = [&](int64_t m) { return a.n_kv0 + m / H; };

  // Scores: S[m][s] = scale * dot_f32(q[m], kv[s]), in tiles of 4 rows by 4
  // cached rows, cached rows in blocks of 32 that stay in L2 while every
  // row tile passes over them. Pairs past a row's last key are computed
  // (on a copy of a valid row) and dropped by the softmax below.
  for (int64_t s0 = 0; s0 < n_kv_max; s0 += kKeyBlock) {
    const int64_t s1 = std::min(n_kv_max, s0 + kKeyBlock);
    const int64_t m_first = std::max<int64_t>(0, s0 - a.n_kv0 + 1) * H;  // rows that see this block
    for (int64_t m0 = m_first; m0 < M; m0 += 4) {
      const float* q[4];
      float scratch_row[4][4];
      for (int r = 0; r < 4; ++r) q[r] = q_row(std::min(m0 + r, M - 1));
      for (int64_t s = s0; s < s1; s += 4) {
        const float* k[4];
        float* out[4];
        for (int c = 0; c < 4; ++c) k[c] = a.kv + std::min(s + c, n_kv_max - 1) * a.kv_stride;
        for (int r = 0; r < 4; ++r) out[r] = m0 + r < M && s + 4 <= ld ? S + (m0 + r) * ld + s : scratch_row[r];
        score_tile(q, k, a.dim_qk, a.scale, out);
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

  // Values: out[m][c] = sum_s P[m][s] * kv[s][c] in order of s, products
  // then sums as axpy_f32 adds them, 8 rows by 32 columns per tile.
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
          acc0[r] = _mm512_add_ps(acc0[r], _mm512_mul_ps(p, v0));
          acc1[r] = _mm512_add_ps(acc1[r], _mm512_mul_ps(p, v1));
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
