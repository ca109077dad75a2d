// The AVX-512 kernels of attention_block.h. Built with AVX-512F flags for
// this file only; chosen at run time when the CPU has them.
#include "cpu/attention_block.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/fp16.h"
#include "cpu/matmul.h"
#include "cpu/qdot.h"
#include "quant/blocks_legacy.h"

namespace moe {

namespace {
constexpr int64_t kKeyChunk = kMlaAttendKeyChunk;
}  // namespace

// Scores [rows][kKeyChunk] f32, probabilities [rows][kKeyChunk] bf16,
// queries [rows][dim_qk rounded up to 32] bf16 (the bf16 kernels), then a
// chunk of cache rows decoded to f32, [kKeyChunk][dim_qk rounded up to 32]
// (the decoding kernels).
size_t mla_attend_chunk_scratch_floats(int64_t rows, int64_t dim_qk) {
  const int64_t dq = (dim_qk + 31) / 32 * 32;
  return static_cast<size_t>(rows * kKeyChunk + rows * kKeyChunk / 2 + rows * dq / 2 + kKeyChunk * dq);
}

MlaAttendKernels mla_attend_kernels(GgmlType row_type) {
  switch (row_type) {
    case GgmlType::F32: return {mla_attend_block_kernel(), mla_attend_range_kernel()};
    case GgmlType::BF16:  // AVX512-BF16's products where the CPU has them, else decoded rows
      if (mla_attend_block_kernel_bf16()) return {mla_attend_block_kernel_bf16(), mla_attend_range_kernel_bf16()};
      return {mla_attend_block_kernel_decoded(row_type), mla_attend_range_kernel_decoded(row_type)};
    default: return {mla_attend_block_kernel_decoded(row_type), mla_attend_range_kernel_decoded(row_type)};
  }
}

size_t mla_attend_block_scratch_floats(int64_t n_tok, int64_t n_heads, int64_t dim_qk, int64_t dim_v) {
  const int64_t rows = n_tok * n_heads;
  return mla_attend_chunk_scratch_floats(rows, dim_qk) + mla_attend_state_floats(rows, dim_v);
}

}  // namespace moe

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

#include "cpu/lanes_avx512.h"

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
  const auto step = [&]<bool kMasked>(int64_t i) {
    const __mmask16 m = lanes(dim - i);
    __m512 kv[4];
    for (int c = 0; c < 4; ++c) kv[c] = load16<kMasked>(m, k[c] + i);
    for (int r = 0; r < 4; ++r) {
      const __m512 x = load16<kMasked>(m, q[r] + i);
      for (int c = 0; c < 4; ++c) acc[kTileSlot[r * 4 + c]] = _mm512_fmadd_ps(x, kv[c], acc[kTileSlot[r * 4 + c]]);
    }
  };
  int64_t i = 0;
  for (; i + 16 <= dim; i += 16) step.template operator()<false>(i);
  if (i < dim) step.template operator()<true>(i);
  store_score_tile(acc, scale, out);
}

// Cached rows [c0, c1) (at most kKeyChunk), f32 at rows (row c0) with
// `stride` floats between them, into the running state of every row that
// sees c0. S: scores, [rows][kKeyChunk].
void attend_chunk_rows(const MlaAttendBlockArgs& a, const float* rows, int64_t stride, int64_t c0, int64_t c1,
                       const MlaAttendState& st) {
  const int64_t H = a.n_heads, M = a.n_tok * H, V = a.dim_v, C = kKeyChunk;
  float* S = a.scratch;
  const int64_t cn = c1 - c0;
  const auto n_kv = [&](int64_t m) { return a.n_kv0 + m / H; };
  const int64_t m_first = first_row_seeing(a, c0);
  if (m_first >= M) return;
  const auto q_row = [&](int64_t m) { return a.q + (m / H) * a.q_tok_stride + (m % H) * a.q_head_stride; };

  chunk_scores(a, rows, stride, cn, m_first, S, q_row,
               [&](const float* const q[4], const float* const k[4], float* const out[4]) {
                 score_tile(q, k, a.dim_qk, a.scale, out);
               });

  softmax_rows(a, st, S, C, c0, cn, m_first, [](__m512 p) { return p; });

  // Values: o[m][c] += sum_s p[m][s] * rows[s][c], 8 rows by 32 columns
  // per tile, the value rows read once per tile.
  for (int64_t m0 = m_first; m0 < M; m0 += kRowTile) {
    const int64_t mr = std::min<int64_t>(kRowTile, M - m0);
    const int64_t ns = std::min(cn, n_kv(m0 + mr - 1) - c0);
    const float* P[kRowTile];
    for (int r = 0; r < kRowTile; ++r) P[r] = S + (m0 + std::min<int64_t>(r, mr - 1)) * C;
    const auto tile = [&]<bool kMasked>(int64_t c) {
      const __mmask16 k0 = lanes(V - c), k1 = lanes(V - c - 16);
      __m512 acc0[kRowTile], acc1[kRowTile];
      for (int r = 0; r < kRowTile; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
      const float* v = rows + a.v_offset + c;
      for (int64_t s = 0; s < ns; ++s, v += stride) {
        const __m512 v0 = load16<kMasked>(k0, v), v1 = load16<kMasked>(k1, v + 16);
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
    };
    int64_t c = 0;
    for (; c + 32 <= V; c += 32) tile.template operator()<false>(c);
    if (c < V) tile.template operator()<true>(c);
  }
}

void attend_chunk(const MlaAttendBlockArgs& a, int64_t c0, int64_t c1, const MlaAttendState& st) {
  const float* kv = static_cast<const float*>(a.kv);
  attend_chunk_rows(a, kv + c0 * a.kv_stride, a.kv_stride, c0, c1, st);
}

void attend_range_avx512(const MlaAttendBlockArgs& a, int64_t s0, int64_t s1, const MlaAttendState& st) {
  attend_range_with(a, s0, s1, st, attend_chunk);
}

void attend_block_avx512(const MlaAttendBlockArgs& a) { attend_block_with(a, attend_range_avx512); }

// ---- f16 and q8_0 rows: each chunk decoded to f32, then attend_chunk_rows ----
// The decoded values are exactly dequantize_row_ref's (an f16 widens
// exactly; a q8_0 value is one rounded product q * d), so these kernels
// give the f32 kernels' results over the decoded cache, bit for bit. The
// decoding is 1 operation per 16 values of a row, against 16 heads x 1088
// multiply-adds per row in the attention itself.

#include "cpu/latent_decode_x86.inc"

// Unit: bytes per step of a.kv_stride (2 for f16, 1 for q8_0 rows, whose
// stride is in bytes).
template <int Unit, void (*Decode)(const uint8_t*, int64_t, float*)>
void attend_chunk_decoded(const MlaAttendBlockArgs& a, int64_t c0, int64_t c1, const MlaAttendState& st) {
  MOE_ASSERT(a.v_offset == 0, "decoded cache rows hold their values at the start");
  if (first_row_seeing(a, c0) >= a.n_tok * a.n_heads) return;
  const int64_t M = a.n_tok * a.n_heads, dq = (a.dim_qk + 31) / 32 * 32;
  float* rows = a.scratch + mla_attend_chunk_scratch_floats(M, a.dim_qk) - kKeyChunk * dq;
  const uint8_t* kv = static_cast<const uint8_t*>(a.kv);
  const int64_t row_bytes = a.kv_stride * Unit;
  for (int64_t s = c0; s < c1; ++s) {
    if (s + kPrefetchRows < c1) prefetch_rows(kv, row_bytes, s + kPrefetchRows, s + kPrefetchRows + 1, row_bytes);
    Decode(kv + s * row_bytes, a.dim_qk, rows + (s - c0) * dq);
  }
  attend_chunk_rows(a, rows, dq, c0, c1, st);
}

template <int Unit, void (*Decode)(const uint8_t*, int64_t, float*)>
void attend_range_decoded(const MlaAttendBlockArgs& a, int64_t s0, int64_t s1, const MlaAttendState& st) {
  attend_range_with(a, s0, s1, st, attend_chunk_decoded<Unit, Decode>);
}

template <int Unit, void (*Decode)(const uint8_t*, int64_t, float*)>
void attend_block_decoded(const MlaAttendBlockArgs& a) {
  attend_block_with(a, attend_range_decoded<Unit, Decode>);
}

}  // namespace

MlaAttendBlockFn mla_attend_block_kernel() {
  return cpu_isa_active() == CpuIsa::kAvx512Vnni ? attend_block_avx512 : nullptr;
}
MlaAttendRangeFn mla_attend_range_kernel() {
  return cpu_isa_active() == CpuIsa::kAvx512Vnni ? attend_range_avx512 : nullptr;
}
namespace {
template <int Unit, void (*Decode)(const uint8_t*, int64_t, float*)>
MlaAttendKernels decoded_pair() {
  return {attend_block_decoded<Unit, Decode>, attend_range_decoded<Unit, Decode>};
}
MlaAttendKernels decoded_kernels(GgmlType row_type) {
  if (cpu_isa_active() != CpuIsa::kAvx512Vnni) return {};
  if (row_type == GgmlType::F16) return decoded_pair<2, decode_f16_row>();
  if (row_type == GgmlType::BF16) return decoded_pair<2, decode_bf16_row>();
  if (row_type == GgmlType::Q8_0) return decoded_pair<1, decode_q8_0_row>();
  return {};
}
}  // namespace
MlaAttendBlockFn mla_attend_block_kernel_decoded(GgmlType row_type) { return decoded_kernels(row_type).block; }
MlaAttendRangeFn mla_attend_range_kernel_decoded(GgmlType row_type) { return decoded_kernels(row_type).range; }

}  // namespace moe
#else
namespace moe {
MlaAttendBlockFn mla_attend_block_kernel() { return nullptr; }
MlaAttendRangeFn mla_attend_range_kernel() { return nullptr; }
MlaAttendBlockFn mla_attend_block_kernel_decoded(GgmlType) { return nullptr; }
MlaAttendRangeFn mla_attend_range_kernel_decoded(GgmlType) { return nullptr; }
}  // namespace moe
#endif
