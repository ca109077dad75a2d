// Importance-matrix quantization, byte-identical to ggml's static
// quantize_row_{q4_0,q4_1,q5_0,q5_1,q2_K,q3_K,q4_K,q5_K,q6_K}_impl
// (ggml-quants.c of llama.cpp 3.22.1): what llama-quantize writes for these
// types when it is given an importance matrix.
//
// w holds one weight per column of the row (the imatrix's mean squared
// activation). Except in Q6_K, which uses w as it is, each weight is scaled
// by sqrt(sigma2 + x^2) so that large values count more; sigma2 is the mean
// square of the whole row for the legacy types, of the super-block for Q2_K,
// and twice that for Q3_K..Q5_K (ggml's constants, not ours to tune). The
// K types then quantize their group scales and mins with make_qp_quants,
// weighted by each group's total weight, instead of the reference's plain
// rounding against the largest scale.
//
// Float rules as in quantize.cpp: ggml's operation order, int-to-float
// conversions where C makes them, no FMA (-ffp-contract=off).

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/quantize.h"
#include "quant/quantize_util.h"

namespace moe::quant_detail {

namespace {

constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS: "all zero" threshold
constexpr int kLegacyBlock = 32;        // QK4_0 == QK4_1 == QK5_0 == QK5_1


// weights[j] = qw[j] * sqrt(sigma2 + x[j]^2); returns their sum, added in
// index order as ggml's sw[] loops do.
float importance_weights(const float* x, const float* qw, float sigma2, int n, float* weights) {
  for (int j = 0; j < n; ++j) weights[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  float sum = 0;
  for (int j = 0; j < n; ++j) sum += weights[j];
  return sum;
}


// ---- legacy 32-element blocks

// The legacy types weight by the mean square of the whole row, not the block.
float row_sigma2(const float* x, int64_t n_per_row) {
  return sum_squares(x, n_per_row) / static_cast<float>(n_per_row);
}

// One block of Q4_0 / Q5_0: codes in [0, 2 nmax) around a signed scale.
float symmetric_block(const float* xb, const float* qw, float sigma2, int nmax, int8_t* L) {
  float weight[kLegacyBlock];
  importance_weights(xb, qw, sigma2, kLegacyBlock, weight);
  return make_qx_quants(kLegacyBlock, nmax, xb, L, weight);
}

// One block of Q4_1 / Q5_1: codes in [0, nmax] times d plus a min <= 0;
// the search is ggml's make_qkx3_quants, i.e. make_qkx2_quants with weights.
float asymmetric_block(const float* xb, const float* qw, float sigma2, int nmax, uint8_t* L, float* neg_min) {
  float weight[kLegacyBlock];
  uint8_t Laux[kLegacyBlock];
  importance_weights(xb, qw, sigma2, kLegacyBlock, weight);
  return make_qkx2_quants(kLegacyBlock, nmax, xb, weight, L, neg_min, Laux, -0.9f, 0.05f, 36, false);
}

// Byte j holds code j (low nibble) and code j + 16 (high nibble).
template <typename Code>
void pack_nibbles(const Code* L, uint8_t* qs) {
  for (int j = 0; j < kLegacyBlock / 2; ++j) {
    qs[j] = static_cast<uint8_t>((L[j] & 0x0f) | (L[j + kLegacyBlock / 2] & 0x0f) << 4);
  }
}

// The fifth bit of code j as bit j of a little-endian u32.
template <typename Code>
void pack_fifth_bits(const Code* L, uint8_t* qh) {
  uint32_t bits = 0;
  for (int j = 0; j < kLegacyBlock; ++j) bits |= static_cast<uint32_t>((L[j] >> 4) & 1) << j;
  for (int b = 0; b < 4; ++b) qh[b] = static_cast<uint8_t>(bits >> (8 * b));
}

// ---- K super-blocks

// Q4_K / Q5_K: per 32-group weighted asymmetric search, then the scales and
// mins quantized to 6 bits against one super-block scale each.
void k_weighted_scales(const float* x, const float* qw, int nmax, uint8_t* L, uint8_t* Ls, uint8_t* Lm,
                       float* d_block, float* m_block) {
  constexpr int kGroups = kQK / 32;
  float weights[32];
  uint8_t Laux[32];
  float sw[kGroups];
  float mins[kGroups];
  float scales[kGroups];
  const float sigma2 = 2 * sum_squares(x, kQK) / static_cast<float>(kQK);
  for (int j = 0; j < kGroups; ++j) {
    sw[j] = importance_weights(x + 32 * j, qw + 32 * j, sigma2, 32, weights);
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
  }
  *d_block = make_qp_quants(kGroups, 63, scales, Ls, sw);
  *m_block = make_qp_quants(kGroups, 63, mins, Lm, sw);
}

}  // namespace

float sum_squares(const float* x, int64_t n) {
  float sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += x[j] * x[j];
  return sum;
}

// ggml's make_qp_quants: n non-negative values (group scales or mins) to
// codes in [0, nmax] times one scale. Picks the best of nine iscales
// (nmax + 0.1 * is) / max by weighted squared error, then moves single codes
// for up to five passes while the least-squares fit improves, and returns
// the least-squares scale. L is uint8_t as in ggml: a negative code (only
// from a negative input, which a degenerate fit can produce) wraps modulo
// 256, and the sums below then see the wrapped value, exactly as ggml does.
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* qw) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = max > x[i] ? max : x[i];  // ggml's MAX macro
  if (max < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  const float fnmax = static_cast<float>(nmax);
  float iscale = fnmax / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
  const float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * static_cast<float>(L[i]);
    best_mse += qw[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * static_cast<float>(is) + fnmax) / max;
    const float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, nearest_int(iscale_is * x[i]));
      const float diff = x[i] - scale_is * static_cast<float>(l);
      mse += qw[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    const float fl = static_cast<float>(l);
    sumlx += qw[i] * x[i] * fl;
    suml2 += qw[i] * fl * fl;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = qw[i];
      const float li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      float sl2 = suml2 - w * li * li;
      if (slx > 0 && sl2 > 0) {
        const int new_l = std::min(nmax, nearest_int(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          const float fl = static_cast<float>(new_l);
          slx += w * x[i] * fl;
          sl2 += w * fl * fl;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

void quantize_row_q4_0_weighted(const float* x, BlockQ4_0* y, int64_t n_per_row, const float* w) {
  const float sigma2 = row_sigma2(x, n_per_row);
  int8_t L[kLegacyBlock];
  for (int64_t ib = 0; ib < n_per_row / kLegacyBlock; ++ib) {
    const float d = symmetric_block(x + kLegacyBlock * ib, w + kLegacyBlock * ib, sigma2, 8, L);
    y[ib].d = fp32_to_fp16(d);
    pack_nibbles(L, y[ib].qs);
  }
}

void quantize_row_q5_0_weighted(const float* x, BlockQ5_0* y, int64_t n_per_row, const float* w) {
  const float sigma2 = row_sigma2(x, n_per_row);
  int8_t L[kLegacyBlock];
  for (int64_t ib = 0; ib < n_per_row / kLegacyBlock; ++ib) {
    const float d = symmetric_block(x + kLegacyBlock * ib, w + kLegacyBlock * ib, sigma2, 16, L);
    y[ib].d = fp32_to_fp16(d);
    pack_nibbles(L, y[ib].qs);
    pack_fifth_bits(L, y[ib].qh);
  }
}

void quantize_row_q4_1_weighted(const float* x, BlockQ4_1* y, int64_t n_per_row, const float* w) {
  const float sigma2 = row_sigma2(x, n_per_row);
  uint8_t L[kLegacyBlock];
  for (int64_t ib = 0; ib < n_per_row / kLegacyBlock; ++ib) {
    float neg_min;
    const float d = asymmetric_block(x + kLegacyBlock * ib, w + kLegacyBlock * ib, sigma2, 15, L, &neg_min);
    y[ib].d = fp32_to_fp16(d);
    y[ib].m = fp32_to_fp16(-neg_min);
    pack_nibbles(L, y[ib].qs);
  }
}

void quantize_row_q5_1_weighted(const float* x, BlockQ5_1* y, int64_t n_per_row, const float* w) {
  const float sigma2 = row_sigma2(x, n_per_row);
  uint8_t L[kLegacyBlock];
  for (int64_t ib = 0; ib < n_per_row / kLegacyBlock; ++ib) {
    float neg_min;
    const float d = asymmetric_block(x + kLegacyBlock * ib, w + kLegacyBlock * ib, sigma2, 31, L, &neg_min);
    y[ib].d = fp32_to_fp16(d);
    y[ib].m = fp32_to_fp16(-neg_min);
    pack_nibbles(L, y[ib].qs);
    pack_fifth_bits(L, y[ib].qh);
  }
}

void quantize_row_q2_k_weighted(const float* x, BlockQ2_K* y, int64_t n_per_row, const float* w) {
  constexpr int kGroups = kQK / 16;
  uint8_t L[kQK];
  uint8_t Laux[16];
  float weight[16];
  float sw[kGroups];
  float mins[kGroups];
  float scales[kGroups];
  uint8_t Ls[kGroups], Lm[kGroups];
  for (int64_t i = 0; i < n_per_row / kQK; ++i, x += kQK) {
    const float* qw = w + kQK * i;
    const float sigma2 = sum_squares(x, kQK) / static_cast<float>(kQK);
    for (int j = 0; j < kGroups; ++j) {
      sw[j] = importance_weights(x + 16 * j, qw + 16 * j, sigma2, 16, weight);
      scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
    }
    const float dm = make_qp_quants(kGroups, 15, scales, Ls, sw);
    const float mm = make_qp_quants(kGroups, 15, mins, Lm, sw);
    BlockQ2_K& b = y[i];
    b.d = fp32_to_fp16(dm);
    b.dmin = fp32_to_fp16(mm);
    for (int j = 0; j < kGroups; ++j) b.scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
    finish_block_q2_k(x, L, b);
  }
}

void quantize_row_q3_k_weighted(const float* x, BlockQ3_K* y, int64_t n_per_row, const float* w) {
  constexpr int kGroups = kQK / 16;
  int8_t L[kQK];
  float weight[16];
  float sw[kGroups];
  float scales[kGroups];
  int8_t Ls[kGroups];
  for (int64_t i = 0; i < n_per_row / kQK; ++i, x += kQK) {
    const float* qw = w + kQK * i;
    const float sigma2 = 2 * sum_squares(x, kQK) / static_cast<float>(kQK);
    for (int j = 0; j < kGroups; ++j) {
      sw[j] = importance_weights(x + 16 * j, qw + 16 * j, sigma2, 16, weight);
      scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weight);
    }
    // The signed scales themselves, to 6 bits (already biased by 32).
    const float d_block = make_qx_quants(kGroups, 32, scales, Ls, sw);
    BlockQ3_K& b = y[i];
    pack_scales_q3_k(Ls, b);
    b.d = fp32_to_fp16(d_block);
    finish_block_q3_k(x, L, b);
  }
}

void quantize_row_q4_k_weighted(const float* x, BlockQ4_K* y, int64_t n_per_row, const float* w) {
  uint8_t L[kQK];
  uint8_t Ls[kQK / 32], Lm[kQK / 32];
  for (int64_t i = 0; i < n_per_row / kQK; ++i, x += kQK) {
    float d_block, m_block;
    k_weighted_scales(x, w + kQK * i, 15, L, Ls, Lm, &d_block, &m_block);
    // No clamp to 63 here, unlike Q5_K: ggml's Q4_K impl has none.
    finish_block_q4_k(x, Ls, Lm, d_block, m_block, L, y[i]);
  }
}

void quantize_row_q5_k_weighted(const float* x, BlockQ5_K* y, int64_t n_per_row, const float* w) {
  uint8_t L[kQK];
  uint8_t Ls[kQK / 32], Lm[kQK / 32];
  for (int64_t i = 0; i < n_per_row / kQK; ++i, x += kQK) {
    float d_block, m_block;
    k_weighted_scales(x, w + kQK * i, 31, L, Ls, Lm, &d_block, &m_block);
    for (int j = 0; j < kQK / 32; ++j) {
      Ls[j] = std::min<uint8_t>(63, Ls[j]);
      Lm[j] = std::min<uint8_t>(63, Lm[j]);
    }
    finish_block_q5_k(x, Ls, Lm, d_block, m_block, L, y[i]);
  }
}

void quantize_row_q6_k_weighted(const float* x, BlockQ6_K* y, int64_t n_per_row, const float* w) {
  for (int64_t i = 0; i < n_per_row / kQK; ++i, x += kQK) quantize_block_q6_k(x, w + kQK * i, y[i]);
}

}  // namespace moe::quant_detail
