// The AVX-512 kernels of attention_block.h. Built with AVX-512F flags for
// this file only; chosen at run time when the CPU has them.
#include "cpu/attention_block.h"

#include <algorithm>
#include <cmath>

#include "cpu/matmul.h"
#include "cpu/qdot.h"

namespace moe {

namespace {
constexpr int64_t kKeyChunk = kMlaAttendKeyChunk;
}  // namespace

// Scores [rows][kKeyChunk] f32, probabilities [rows][kKeyChunk] bf16,
// queries [rows][dim_qk rounded up to 32] bf16.
size_t mla_attend_chunk_scratch_floats(int64_t rows, int64_t dim_qk) {
  return static_cast<size_t>(rows * kKeyChunk + rows * kKeyChunk / 2 + rows * ((dim_qk + 31) / 32 * 16));
}

size_t mla_attend_block_scratch_floats(int64_t n_tok, int64_t n_heads, int64_t dim_qk, int64_t dim_v) {
  const int64_t rows = n_tok * n_heads;
  return mla_attend_chunk_scratch_floats(rows, dim_qk) + mla_attend_state_floats(rows, dim_v);
}

}  // namespace moe

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

namespace moe {
namespace {

constexpr int kRowTile = 8;  // query rows per output tile: 16 accumulators

#include "cpu/attention_x86.inc"

// Scores of 4 query rows against 4 cached rows: 16 accumulators, 8 loads
// per 16 fused multiply-adds; out[r][c] = scale * q[r] . k[c].
void score_tile(const float* const q[4], const float* const k[4], int64_t dim, float scale, float* const out[4]) {
  __m512 acc[16];
  for (__m512& v : acc) v = _mm512_setzero_ps();
  // acc[bitrev4(r * 4 + c)] holds the pair (r, c), so that the reduction
  // leaves pair (r, c) in lane r * 4 + c.
  for (int64_t i = 0; i < dim; i += 16) {
    const __mmask16 m = lanes(dim - i);
    __m512 kv[4];
    for (int c = 0; c < 4; ++c) kv[c] = _mm512_maskz_loadu_ps(m, k[c] + i);
    for (int r = 0; r < 4; ++r) {
      const __m512 x = _mm512_maskz_loadu_ps(m, q[r] + i);
      for (int c = 0; c < 4; ++c) acc[kTileSlot[r * 4 + c]] = _mm512_fmadd_ps(x, kv[c], acc[kTileSlot[r * 4 + c]]);
    }
  }
  store_score_tile(acc, scale, out);
}

// Cached rows [c0, c1) (at most kKeyChunk) into the running state of every
// row that sees c0. S: scores, [rows][kKeyChunk].
void attend_chunk(const MlaAttendBlockArgs& a, int64_t c0, int64_t c1, const MlaAttendState& st) {
  const int64_t H = a.n_heads, M = a.n_tok * H, V = a.dim_v, C = kKeyChunk;
  float* S = a.scratch;
  const float* kv = static_cast<const float*>(a.kv);
  const int64_t cn = c1 - c0;
  const auto n_kv = [&](int64_t m) { return a.n_kv0 + m / H; };
  const int64_t m_first = first_row_seeing(a, c0);
  if (m_first >= M) return;
  const auto q_row = [&](int64_t m) { return a.q + (m / H) * a.q_tok_stride + (m % H) * a.q_head_stride; };

  chunk_scores(a, kv, c0, cn, m_first, S, q_row, [&](const float* const q[4], const float* const k[4], float* const out[4]) {
    score_tile(q, k, a.dim_qk, a.scale, out);
  });

  softmax_rows(a, st, S, C, c0, cn, m_first, [](__m512 p) { return p; });

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
      const float* v = kv + c0 * a.kv_stride + c;
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
  attend_range_with(a, s0, s1, st, attend_chunk);
}

void attend_block_avx512(const MlaAttendBlockArgs& a) { attend_block_with(a, attend_range_avx512); }

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
