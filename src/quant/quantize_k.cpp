// K-quant reference quantization (256-element super-blocks), byte-identical
// to ggml's quantize_row_q{2,3,4,5,6,8}_K_ref. See quantize.cpp for the
// floating-point rules this file follows; expressions keep ggml's operand
// order on purpose (e.g. (w * l) * l, not w * (l * l)). The searches and
// block tails declared in quantize_util.h are also the back half of the
// importance-weighted quantizers (quantize_weighted.cpp).

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

int clamp_int(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// Q3_K's per-16 scale search (ggml's make_q3_quants with do_rmse = true):
// start from the max-magnitude scale, then greedily move single codes while
// that improves the weighted fit (weights x^2), for up to 5 passes.
float make_q3_quants_rmse(int n, int nmax, const float* x, int8_t* L) {
  const SignedMax sm = signed_abs_max(x, n);
  const float amax = sm.amax, max = sm.max;
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  const float iscale = -static_cast<float>(nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      const float li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      if (slx > 0) {
        float sl2 = suml2 - w * li * li;
        const int new_l = clamp_int(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
        if (new_l != L[i]) {
          const float fl = static_cast<float>(new_l);
          slx += w * x[i] * fl;
          sl2 += w * fl * fl;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Packs 256 two-bit codes: byte l of each 32-byte half holds elements
// l, l+32, l+64, l+96 of that 128-element half in bits 0-1, 2-3, 4-5, 6-7.
template <typename Code>
void pack_2bit(const Code* L, uint8_t* qs) {
  for (int j = 0; j < kQK; j += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                           (L[j + l + 96] << 6));
    }
  }
}

// Scale and min search shared by Q4_K and Q5_K: eight 32-element groups,
// weights av_x + |x| with av_x the group's rms.
void k_group_scales(const float* x, int nmax, float rmin, int nstep, uint8_t* L, float* scales, float* mins,
                    float* max_scale, float* max_min) {
  float weights[32];
  uint8_t Laux[32];
  *max_scale = 0;
  *max_min = 0;
  for (int j = 0; j < kQK / 32; ++j) {
    const float* xg = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xg[l] * xg[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xg[l]);
    scales[j] = make_qkx2_quants(32, nmax, xg, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
    if (scales[j] > *max_scale) *max_scale = scales[j];
    if (mins[j] > *max_min) *max_min = mins[j];
  }
}

// Q4_K / Q5_K tail (see finish_block_q4_k in quantize_util.h).
template <typename Block>
void k_finish_scales(const float* x, int nmax, const uint8_t* ls, const uint8_t* lm, float d, float dmin,
                     uint8_t* L, Block& b) {
  uint8_t* packed = b.scales;
  for (int j = 0; j < kQK / 32; ++j) {
    if (j < 4) {
      packed[j] = ls[j];
      packed[j + 4] = lm[j];
    } else {
      packed[j + 4] = static_cast<uint8_t>((ls[j] & 0x0f) | (lm[j] & 0x0f) << 4);
      packed[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
      packed[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
    }
  }
  b.d = fp32_to_fp16(d);
  b.dmin = fp32_to_fp16(dmin);
  for (int j = 0; j < kQK / 32; ++j) {
    int sc, m;
    k_scale_min(j, packed, &sc, &m);
    const float dj = fp16_to_fp32(b.d) * static_cast<float>(sc);
    if (dj == 0.0f) continue;
    const float dm = fp16_to_fp32(b.dmin) * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii) {
      L[32 * j + ii] = static_cast<uint8_t>(clamp_int(nearest_int((x[32 * j + ii] + dm) / dj), 0, nmax));
    }
  }
}

// The reference's 6-bit scale and min codes: nearest multiples of
// max_scale / 63 and max_min / 63.
void k_round_scales(const float* scales, const float* mins, float max_scale, float max_min, uint8_t* ls,
                    uint8_t* lm) {
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < kQK / 32; ++j) {
    // ggml stores nearest_int into a uint8_t before clamping to 63.
    ls[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    lm[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
  }
}

}  // namespace

float make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* qw) {
  const SignedMax sm = signed_abs_max(x, n);
  const float amax = sm.amax, max = sm.max;
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  const float fnmax = static_cast<float>(nmax);
  float iscale = -fnmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = qw ? qw[i] : x[i] * x[i];
    const float fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(fnmax + 0.1f * static_cast<float>(is)) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float w = qw ? qw[i] : x[i] * x[i];
      const float fl = static_cast<float>(l);
      sumlx += w * x[i] * fl;
      suml2 += w * fl * fl;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        L[i] = static_cast<int8_t>(nmax + clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* neg_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *neg_min = -min;
    return 0.f;
  }
  const float fnmax = static_cast<float>(nmax);
  float iscale = fnmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  if (nstep < 1) {
    *neg_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + fnmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      const float fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *neg_min = -min;
  return scale;
}

void finish_block_q2_k(const float* x, uint8_t* L, BlockQ2_K& b) {
  for (int j = 0; j < kQK / 16; ++j) {
    const float d = fp16_to_fp32(b.d) * static_cast<float>(b.scales[j] & 0x0f);
    if (d == 0.0f) continue;
    const float dm = fp16_to_fp32(b.dmin) * static_cast<float>(b.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      L[16 * j + ii] = static_cast<uint8_t>(clamp_int(nearest_int((x[16 * j + ii] + dm) / d), 0, 3));
    }
  }
  pack_2bit(L, b.qs);
}

void pack_scales_q3_k(const int8_t* biased, BlockQ3_K& b) {
  std::memset(b.scales, 0, sizeof b.scales);
  for (int j = 0; j < kQK / 16; ++j) {
    const int l = biased[j];
    if (j < 8) {
      b.scales[j] = static_cast<uint8_t>(l & 0x0f);
    } else {
      b.scales[j - 8] |= static_cast<uint8_t>((l & 0x0f) << 4);
    }
    b.scales[j % 4 + 8] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
  }
}

void finish_block_q3_k(const float* x, int8_t* L, BlockQ3_K& b) {
  for (int j = 0; j < kQK / 16; ++j) {
    const float d = fp16_to_fp32(b.d) * static_cast<float>(q3_k_scale(j, b.scales));
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      L[16 * j + ii] = static_cast<int8_t>(clamp_int(nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
    }
  }
  // High bit of element j goes to bit (j / 32) of hmask[j % 32].
  std::memset(b.hmask, 0, sizeof b.hmask);
  for (int j = 0; j < kQK; ++j) {
    if (L[j] > 3) {
      b.hmask[j % 32] |= static_cast<uint8_t>(1u << (j / 32));
      L[j] = static_cast<int8_t>(L[j] - 4);
    }
  }
  pack_2bit(L, b.qs);
}

void finish_block_q4_k(const float* x, const uint8_t* ls, const uint8_t* lm, float d, float dmin, uint8_t* L,
                       BlockQ4_K& b) {
  k_finish_scales(x, 15, ls, lm, d, dmin, L, b);
  // 64-element chunks: low nibbles hold the first 32, high nibbles the next 32.
  for (int c = 0; c < kQK / 64; ++c) {
    for (int l = 0; l < 32; ++l) {
      b.qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | L[64 * c + l + 32] << 4);
    }
  }
}

void finish_block_q5_k(const float* x, const uint8_t* ls, const uint8_t* lm, float d, float dmin, uint8_t* L,
                       BlockQ5_K& b) {
  k_finish_scales(x, 31, ls, lm, d, dmin, L, b);
  // As Q4_K, plus the fifth bit of group g (0..7) in bit g of qh[l].
  std::memset(b.qh, 0, sizeof b.qh);
  for (int c = 0; c < kQK / 64; ++c) {
    for (int l = 0; l < 32; ++l) {
      int lo = L[64 * c + l];
      int hi = L[64 * c + l + 32];
      if (lo > 15) {
        lo -= 16;
        b.qh[l] |= static_cast<uint8_t>(1u << (2 * c));
      }
      if (hi > 15) {
        hi -= 16;
        b.qh[l] |= static_cast<uint8_t>(2u << (2 * c));
      }
      b.qs[32 * c + l] = static_cast<uint8_t>(lo | hi << 4);
    }
  }
}

void quantize_block_q6_k(const float* x, const float* qw, BlockQ6_K& b) {
  int8_t L[kQK];
  float scales[kQK / 16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < kQK / 16; ++ib) {
    scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, qw ? qw + 16 * ib : nullptr);
    const float abs_scale = std::fabs(scales[ib]);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scales[ib];
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(&b, 0, sizeof b);
    return;
  }
  const float iscale = -128.f / max_scale;
  b.d = fp32_to_fp16(1 / iscale);
  for (int ib = 0; ib < kQK / 16; ++ib) {
    b.scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
  }
  for (int j = 0; j < kQK / 16; ++j) {
    const float d = fp16_to_fp32(b.d) * static_cast<float>(b.scales[j]);
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      L[16 * j + ii] = static_cast<int8_t>(clamp_int(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
    }
  }
  // Per 128-element half: ql bytes l and l+32 hold elements (l, l+64) and
  // (l+32, l+96) as low/high nibbles; qh[l] holds the top 2 bits of all four.
  for (int h = 0; h < 2; ++h) {
    const int8_t* Lh = L + 128 * h;
    uint8_t* ql = b.ql + 64 * h;
    uint8_t* qh = b.qh + 32 * h;
    for (int l = 0; l < 32; ++l) {
      const int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
      ql[l] = static_cast<uint8_t>((q1 & 0x0f) | (q3 & 0x0f) << 4);
      ql[l + 32] = static_cast<uint8_t>((q2 & 0x0f) | (q4 & 0x0f) << 4);
      qh[l] = static_cast<uint8_t>((q1 >> 4) | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
    }
  }
}

void quantize_rows_q2_k(const float* x, BlockQ2_K* y, int64_t nb) {
  constexpr float kQ4Scale = 15.f;
  uint8_t L[kQK];
  uint8_t Laux[16];
  float weights[16];
  float mins[kQK / 16];
  float scales[kQK / 16];
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < kQK / 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    BlockQ2_K& b = y[i];
    if (max_scale > 0) {
      const float iscale = kQ4Scale / max_scale;
      for (int j = 0; j < kQK / 16; ++j) b.scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
      b.d = fp32_to_fp16(max_scale / kQ4Scale);
    } else {
      for (int j = 0; j < kQK / 16; ++j) b.scales[j] = 0;
      b.d = fp32_to_fp16(0.f);
    }
    if (max_min > 0) {
      const float iscale = kQ4Scale / max_min;
      for (int j = 0; j < kQK / 16; ++j) b.scales[j] |= static_cast<uint8_t>(nearest_int(iscale * mins[j]) << 4);
      b.dmin = fp32_to_fp16(max_min / kQ4Scale);
    } else {
      b.dmin = fp32_to_fp16(0.f);
    }
    finish_block_q2_k(x, L, b);
  }
}

void quantize_rows_q3_k(const float* x, BlockQ3_K* y, int64_t nb) {
  int8_t L[kQK];
  float scales[kQK / 16];
  int8_t biased[kQK / 16];
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    BlockQ3_K& b = y[i];
    float max_scale = 0, amax = 0;
    for (int j = 0; j < kQK / 16; ++j) {
      scales[j] = make_q3_quants_rmse(16, 4, x + 16 * j, L + 16 * j);
      const float scale = std::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    if (max_scale != 0.0f) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < kQK / 16; ++j) {
        // ggml keeps this in an int8_t: truncate, clamp to [-32, 31], bias by 32.
        const int l = static_cast<int8_t>(nearest_int(iscale * scales[j]));
        biased[j] = static_cast<int8_t>(clamp_int(l, -32, 31) + 32);
      }
      pack_scales_q3_k(biased, b);
      b.d = fp32_to_fp16(1 / iscale);
    } else {
      std::memset(b.scales, 0, sizeof b.scales);
      b.d = fp32_to_fp16(0.f);
    }
    finish_block_q3_k(x, L, b);
  }
}

void quantize_rows_q4_k(const float* x, BlockQ4_K* y, int64_t nb) {
  uint8_t L[kQK];
  float mins[kQK / 32];
  float scales[kQK / 32];
  uint8_t ls[kQK / 32], lm[kQK / 32];
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float max_scale, max_min;
    k_group_scales(x, 15, -1.f, 20, L, scales, mins, &max_scale, &max_min);
    k_round_scales(scales, mins, max_scale, max_min, ls, lm);
    finish_block_q4_k(x, ls, lm, max_scale / 63.f, max_min / 63.f, L, y[i]);
  }
}

void quantize_rows_q5_k(const float* x, BlockQ5_K* y, int64_t nb) {
  uint8_t L[kQK];
  float mins[kQK / 32];
  float scales[kQK / 32];
  uint8_t ls[kQK / 32], lm[kQK / 32];
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float max_scale, max_min;
    k_group_scales(x, 31, -0.5f, 15, L, scales, mins, &max_scale, &max_min);
    k_round_scales(scales, mins, max_scale, max_min, ls, lm);
    finish_block_q5_k(x, ls, lm, max_scale / 63.f, max_min / 63.f, L, y[i]);
  }
}

void quantize_rows_q6_k(const float* x, BlockQ6_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) quantize_block_q6_k(x, nullptr, y[i]);
}

void quantize_rows_q8_k(const float* x, BlockQ8_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    BlockQ8_K& b = y[i];
    const SignedMax sm = signed_abs_max(x, kQK);
    const float amax = sm.amax, max = sm.max;
    if (amax == 0.0f) {
      b.d = 0;
      std::memset(b.qs, 0, sizeof b.qs);
      std::memset(b.bsums, 0, sizeof b.bsums);  // ggml leaves them unwritten; zero is their value
      continue;
    }
    // -127 (not -128) so that the codes stay in [-127, 127].
    const float iscale = -127.f / max;
    for (int j = 0; j < kQK; ++j) b.qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
    for (int j = 0; j < kQK / 16; ++j) {
      int sum = 0;
      for (int ii = 0; ii < 16; ++ii) sum += b.qs[j * 16 + ii];
      b.bsums[j] = static_cast<int16_t>(sum);
    }
    b.d = 1 / iscale;
  }
}

}  // namespace moe::quant_detail
