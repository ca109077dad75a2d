// The AVX-512 kernel of dsa_indexer.h's scores. Built with AVX-512F flags
// for this file only; chosen at run time when the CPU has them.
//
// Generation at long context spends its indexer time here: every cached
// position against every head (V3.2: 64 heads x 128 values, 8192
// multiply-adds per position and layer, as much as the rest of a token's
// attention at 32k). The reference takes one dot product per head and
// position, each ending in a horizontal sum; here the query is transposed
// once ([dim][heads]) so 16 heads fill a vector, and 4 positions share each
// load of it: a position's value k[d] is broadcast into the fused
// multiply-adds of all its heads. One horizontal sum per position and
// group of 64 heads remains, after ReLU and the head weights.
#include "cpu/dsa_indexer.h"

#include "cpu/latent_rows.h"
#include "cpu/matmul.h"
#include "cpu/qdot.h"

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>

namespace moe {
namespace {

constexpr int64_t kGroupHeads = 64;  // heads per pass: 4 vectors
constexpr int kBlock = 4;            // positions sharing each load of the query
constexpr int64_t kMaxQuery = 16384; // floats of the transposed query on the stack
constexpr int64_t kMaxHeads = 1024;  // scaled head weights on the stack

// The sum of the 16 lanes. (GCC 12's unmasked reductions, shuffles and
// extracts warn of an uninitialized temporary in its own header; once per
// position and 64 heads, a store and scalar adds cost nothing here.)
inline float lanes_sum(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  float s = 0.0f;
  for (int i = 0; i < 8; ++i) s += t[i] + t[i + 8];
  return s;
}

inline __m512 relu(__m512 v) { return _mm512_mask_max_ps(v, __mmask16(0xffff), v, _mm512_setzero_ps()); }

// scores[0 .. N) += heads [h0, h0 + 16 NV) of positions keys[0 .. N).
// qt: [D][Hp] (Hp = heads rounded up to 16, zero past H); w: [Hp] scaled,
// zero past H. N and NV are constants so the accumulators stay in registers.
template <int N, int NV>
void block(const float* qt, int64_t Hp, const float* w, int64_t h0, const float* keys, int64_t stride, int64_t D,
           float* scores) {
  __m512 acc[N][NV];
  for (int p = 0; p < N; ++p)
    for (int v = 0; v < NV; ++v) acc[p][v] = _mm512_setzero_ps();
  const float* q = qt + h0;
  for (int64_t d = 0; d < D; ++d, q += Hp) {
    __m512 qv[NV];
    for (int v = 0; v < NV; ++v) qv[v] = _mm512_loadu_ps(q + 16 * v);
    for (int p = 0; p < N; ++p) {
      const __m512 k = _mm512_set1_ps(keys[p * stride + d]);
      for (int v = 0; v < NV; ++v) acc[p][v] = _mm512_fmadd_ps(qv[v], k, acc[p][v]);
    }
  }
  const __m512 zero = _mm512_setzero_ps();
  for (int p = 0; p < N; ++p) {
    __m512 sum = zero;
    for (int v = 0; v < NV; ++v)
      sum = _mm512_fmadd_ps(relu(acc[p][v]), _mm512_loadu_ps(w + h0 + 16 * v), sum);
    scores[p] += lanes_sum(sum);
  }
}

// Stored keys of type t (rows `stride` floats apart) decoded into x
// [n][dim] (latent_row_decode: its vector decoders on this CPU).
void decode_keys(LatentType t, const float* keys, int64_t stride, int64_t n, int64_t dim, float* x) {
  for (int64_t i = 0; i < n; ++i) latent_row_decode(t, keys + i * stride, dim, x + i * dim);
}

// Positions [0, n) in blocks of kBlock, then one at a time; typed keys
// decoded a block at a time into `tmp` ([kBlock][D], in L1).
template <int NV>
void heads(const float* qt, int64_t Hp, const float* w, int64_t h0, LatentType type, const float* keys, int64_t stride,
           int64_t D, int64_t n, float* scores, float* tmp) {
  const bool typed = type != LatentType::kF32;
  // Keys [s, s + m) as f32 rows: in place, or decoded into tmp.
  auto rows = [&](int64_t s, int64_t m, int64_t& row_stride) -> const float* {
    if (!typed) {
      row_stride = stride;
      return keys + s * stride;
    }
    decode_keys(type, keys + s * stride, stride, m, D, tmp);
    row_stride = D;
    return tmp;
  };
  int64_t s = 0, st = 0;
  for (; s + kBlock <= n; s += kBlock) {
    const float* k = rows(s, kBlock, st);
    block<kBlock, NV>(qt, Hp, w, h0, k, st, D, scores + s);
  }
  for (; s < n; ++s) {
    const float* k = rows(s, 1, st);
    block<1, NV>(qt, Hp, w, h0, k, st, D, scores + s);
  }
}

void dsa_scores_avx512(const DsaParams& p, const float* q, const float* w, const float* keys, int64_t key_stride,
                       int64_t n_kv, float* scores) {
  const int64_t H = p.n_heads, D = p.head_dim, Hp = (H + 15) / 16 * 16;
  if (Hp * D > kMaxQuery || Hp > kMaxHeads || kBlock * D > kMaxQuery)
    return dsa_scores(p, q, w, keys, key_stride, n_kv, scores);
  alignas(64) float qt[kMaxQuery];
  alignas(64) float tmp[kMaxQuery];  // a block of decoded keys
  alignas(64) float ws[kMaxHeads];
  for (int64_t d = 0; d < D; ++d) {
    for (int64_t h = 0; h < H; ++h) qt[d * Hp + h] = q[h * D + d];
    for (int64_t h = H; h < Hp; ++h) qt[d * Hp + h] = 0.0f;
  }
  const float wscale = 1.0f / std::sqrt(static_cast<float>(D * H));
  for (int64_t h = 0; h < Hp; ++h) ws[h] = h < H ? w[h] * wscale : 0.0f;
  std::fill(scores, scores + n_kv, 0.0f);
  for (int64_t h0 = 0; h0 < H; h0 += kGroupHeads) {
    switch ((std::min(kGroupHeads, H - h0) + 15) / 16) {  // vectors of 16 heads in this group
      case 1: heads<1>(qt, Hp, ws, h0, p.key_type, keys, key_stride, D, n_kv, scores, tmp); break;
      case 2: heads<2>(qt, Hp, ws, h0, p.key_type, keys, key_stride, D, n_kv, scores, tmp); break;
      case 3: heads<3>(qt, Hp, ws, h0, p.key_type, keys, key_stride, D, n_kv, scores, tmp); break;
      default: heads<4>(qt, Hp, ws, h0, p.key_type, keys, key_stride, D, n_kv, scores, tmp); break;
    }
  }
}

}  // namespace

DsaScoresFn dsa_scores_kernel() { return cpu_isa_active() == CpuIsa::kAvx512Vnni ? dsa_scores_avx512 : nullptr; }

}  // namespace moe
#else
namespace moe {
DsaScoresFn dsa_scores_kernel() { return nullptr; }
}  // namespace moe
#endif
