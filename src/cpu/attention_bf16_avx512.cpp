// The bf16 kernels of attention_block.h: cache rows in bf16, queries and
// probabilities rounded to bf16, products in pairs with f32 sums
// (VDPBF16PS: 32 products per instruction where f32 has 16). Built with
// AVX512-BF16 flags for this file only; chosen at run time when the CPU has
// them.
#include "cpu/attention_block.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "cpu/matmul.h"
#include "cpu/qdot.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BF16__)
#include <immintrin.h>

#include "cpu/lanes_avx512.h"

namespace moe {
namespace {

constexpr int64_t kKeyChunk = kMlaAttendKeyChunk;
constexpr int kRowTile = 8;  // query rows per output tile: 16 accumulators

#include "cpu/attention_x86.inc"

inline __mmask32 lanes32(int64_t n) {
  return n >= 32 ? ~__mmask32(0) : n <= 0 ? __mmask32(0) : static_cast<__mmask32>((1u << n) - 1);
}
inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh&>(v); }
// 32 bf16 words, masked only past the data (see load16 in lanes_avx512.h).
template <bool kMasked>
inline __m512i load32(__mmask32 m, const uint16_t* p) {
  if constexpr (kMasked) return _mm512_maskz_loadu_epi16(m, p);
  return _mm512_loadu_si512(p);
}

// f32 -> nearest bf16 -> f32.
inline __m512 round_bf16(__m512 p) {
  const __m256bh b = _mm512_cvtneps_pbh(p);
  const __m512i wide = _mm512_maskz_cvtepu16_epi32(0xFFFF, reinterpret_cast<const __m256i&>(b));
  return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xFFFF, wide, 16));
}

// The scratch past the scores: probabilities [rows][kKeyChunk] and queries
// [rows][dq] in bf16, dq = dim_qk rounded up to 32 (zeros after dim_qk).
struct Bf16Scratch {
  uint16_t* P;
  uint16_t* q;
  int64_t dq;
};
Bf16Scratch bf16_scratch(const MlaAttendBlockArgs& a) {
  const int64_t M = a.n_tok * a.n_heads;
  uint16_t* P = reinterpret_cast<uint16_t*>(a.scratch + M * kKeyChunk);
  return {P, P + M * kKeyChunk, (a.dim_qk + 31) / 32 * 32};
}

// Scores of 4 query rows against 4 cached rows, 32 elements per step.
void score_tile(const uint16_t* const q[4], const uint16_t* const k[4], int64_t dim, int64_t dq, float scale,
                float* const out[4]) {
  __m512 acc[16];
  for (__m512& v : acc) v = _mm512_setzero_ps();
  const auto step = [&]<bool kMasked>(int64_t i) {
    const __mmask32 m = lanes32(dim - i);
    __m512bh kv[4];
    for (int c = 0; c < 4; ++c) kv[c] = as_bh(load32<kMasked>(m, k[c] + i));
    for (int r = 0; r < 4; ++r) {
      const __m512bh x = as_bh(_mm512_loadu_si512(q[r] + i));
      for (int c = 0; c < 4; ++c) acc[kTileSlot[r * 4 + c]] = _mm512_dpbf16_ps(acc[kTileSlot[r * 4 + c]], x, kv[c]);
    }
  };
  int64_t i = 0;
  for (; i + 32 <= dim; i += 32) step.template operator()<false>(i);
  if (i < dq) step.template operator()<true>(i);
  store_score_tile(acc, scale, out);
}

void attend_chunk_bf16(const MlaAttendBlockArgs& a, int64_t c0, int64_t c1, const MlaAttendState& st) {
  MOE_ASSERT(a.v_offset == 0, "bf16 cache rows hold their values at the start");
  const int64_t H = a.n_heads, M = a.n_tok * H, V = a.dim_v, C = kKeyChunk;
  const int64_t cn = c1 - c0;
  const auto n_kv = [&](int64_t m) { return a.n_kv0 + m / H; };
  const int64_t m_first = first_row_seeing(a, c0);
  if (m_first >= M) return;
  float* S = a.scratch;
  const Bf16Scratch b = bf16_scratch(a);
  const uint16_t* kv = static_cast<const uint16_t*>(a.kv);

  const auto q_row = [&](int64_t m) { return b.q + m * b.dq; };
  chunk_scores(a, kv + c0 * a.kv_stride, a.kv_stride, cn, m_first, S, q_row,
               [&](const uint16_t* const q[4], const uint16_t* const k[4], float* const out[4]) {
                 score_tile(q, k, a.dim_qk, b.dq, a.scale, out);
               });

  softmax_rows(a, st, S, C, c0, cn, m_first, round_bf16);
  for (int64_t m = m_first; m < M; ++m)  // exact: the values are bf16 already
    for (int64_t i = 0; i < C; i += 32) {
      const __m512bh p = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(S + m * C + i + 16), _mm512_loadu_ps(S + m * C + i));
      _mm512_storeu_si512(b.P + m * C + i, reinterpret_cast<const __m512i&>(p));
    }

  // Values two cached rows at a time: the rows' words interleaved in pairs
  // (unpack within 128-bit lanes: lo holds columns 8L..8L+3 of lane L, hi
  // 8L+4..8L+7), against the pair (p[s], p[s+1]) of each query row.
  const __m512i to_cols_lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i to_cols_hi = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  for (int64_t m0 = m_first; m0 < M; m0 += kRowTile) {
    const int64_t mr = std::min<int64_t>(kRowTile, M - m0);
    const int64_t ns = std::min(cn, n_kv(m0 + mr - 1) - c0);
    const uint16_t* P[kRowTile];
    for (int r = 0; r < kRowTile; ++r) P[r] = b.P + (m0 + std::min<int64_t>(r, mr - 1)) * C;
    const auto tile = [&]<bool kMasked>(int64_t c) {
      const __mmask32 k = lanes32(V - c);
      __m512 lo_acc[kRowTile], hi_acc[kRowTile];
      for (int r = 0; r < kRowTile; ++r) lo_acc[r] = hi_acc[r] = _mm512_setzero_ps();
      for (int64_t s = 0; s < ns; s += 2) {
        const uint16_t* v = kv + (c0 + s) * a.kv_stride + c;
        const __m512i v0 = load32<kMasked>(k, v);
        const __m512i v1 = s + 1 < cn ? load32<kMasked>(k, v + a.kv_stride) : _mm512_setzero_si512();
        const __m512bh lo = as_bh(_mm512_unpacklo_epi16(v0, v1)), hi = as_bh(_mm512_unpackhi_epi16(v0, v1));
        for (int r = 0; r < kRowTile; ++r) {
          int32_t pair;
          __builtin_memcpy(&pair, P[r] + s, sizeof(pair));
          const __m512bh pp = as_bh(_mm512_set1_epi32(pair));
          lo_acc[r] = _mm512_dpbf16_ps(lo_acc[r], lo, pp);
          hi_acc[r] = _mm512_dpbf16_ps(hi_acc[r], hi, pp);
        }
      }
      const __mmask16 k0 = lanes(V - c), k1 = lanes(V - c - 16);
      for (int64_t r = 0; r < mr; ++r) {
        float* o = st.o + (m0 + r) * V + c;
        const __m512 o0 = _mm512_permutex2var_ps(lo_acc[r], to_cols_lo, hi_acc[r]);
        const __m512 o1 = _mm512_permutex2var_ps(lo_acc[r], to_cols_hi, hi_acc[r]);
        _mm512_mask_storeu_ps(o, k0, _mm512_add_ps(_mm512_maskz_loadu_ps(k0, o), o0));
        _mm512_mask_storeu_ps(o + 16, k1, _mm512_add_ps(_mm512_maskz_loadu_ps(k1, o + 16), o1));
      }
    };
    int64_t c = 0;
    for (; c + 32 <= V; c += 32) tile.template operator()<false>(c);
    if (c < V) tile.template operator()<true>(c);
  }
}

void attend_range_bf16(const MlaAttendBlockArgs& a, int64_t s0, int64_t s1, const MlaAttendState& st) {
  // The queries in bf16 once per call, zeros after dim_qk.
  const int64_t H = a.n_heads, M = a.n_tok * H;
  const Bf16Scratch b = bf16_scratch(a);
  for (int64_t m = 0; m < M; ++m) {
    const float* q = a.q + (m / H) * a.q_tok_stride + (m % H) * a.q_head_stride;
    for (int64_t i = 0; i < b.dq; i += 32) {
      const __m512 lo = _mm512_maskz_loadu_ps(lanes(a.dim_qk - i), q + i);
      const __m512 hi = _mm512_maskz_loadu_ps(lanes(a.dim_qk - i - 16), q + i + 16);
      const __m512bh x = _mm512_cvtne2ps_pbh(hi, lo);
      _mm512_storeu_si512(b.q + m * b.dq + i, reinterpret_cast<const __m512i&>(x));
    }
  }
  attend_range_with(a, s0, s1, st, attend_chunk_bf16);
}

void attend_block_bf16(const MlaAttendBlockArgs& a) { attend_block_with(a, attend_range_bf16); }

// Asked on every attention call: probed once.
bool cpu_has_avx512_bf16() {
  static const bool has = [] {
    __builtin_cpu_init();
    return cpu_isa_active() == CpuIsa::kAvx512Vnni && __builtin_cpu_supports("avx512bf16");
  }();
  return has;
}

}  // namespace

MlaAttendBlockFn mla_attend_block_kernel_bf16() { return cpu_has_avx512_bf16() ? attend_block_bf16 : nullptr; }
MlaAttendRangeFn mla_attend_range_kernel_bf16() { return cpu_has_avx512_bf16() ? attend_range_bf16 : nullptr; }

}  // namespace moe
#else
namespace moe {
MlaAttendBlockFn mla_attend_block_kernel_bf16() { return nullptr; }
MlaAttendRangeFn mla_attend_range_kernel_bf16() { return nullptr; }
}  // namespace moe
#endif
