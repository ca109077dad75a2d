// IQ4_NL and IQ4_XS quantization, byte-identical to ggml's
// quantize_row_iq4_nl_impl (llama.cpp 3.22.1), with or without an
// importance matrix.
//
// Both formats store 4-bit indices into kIq4nlValues, a non-uniform level set
// denser near zero. Each 32-element group gets the scale that minimises the
// weighted squared error over 15 candidate scales (the amax scale moved by
// -7..+7 steps of the level table); IQ4_XS then re-expresses the eight group
// scales as 6-bit multiples of one fp16 super-block scale and re-picks the
// indices for the rounded scale. As in quantize.cpp, every float operation is
// in ggml's order (no FMA: -ffp-contract=off), because a one-ulp change moves
// an index.

#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "quant/blocks_iq.h"
#include "quant/iq_grids.h"
#include "quant/quantize.h"
#include "quant/quantize_util.h"

namespace moe::quant_detail {

namespace {

constexpr int kGroup = 32;
constexpr int kTries = 7;               // candidate scales either side of the amax scale
constexpr float kGroupMaxEps = 1e-15f;  // a group this small is stored as zeros

// The index of the level nearest x (ties to the lower level), by bisection.
int nearest_level(const int8_t* values, float x) {
  constexpr int n = 16;
  if (x <= values[0]) return 0;
  if (x >= values[n - 1]) return n - 1;
  int lo = 0, hi = n - 1;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (x < values[mid]) hi = mid;
    else lo = mid;
  }
  return x - values[hi - 1] < values[hi] - x ? hi - 1 : hi;
}

// Best scale of one group by weighted least squares over the candidate
// scales; writes the group's indices for that search into L.
float best_group_scale(const float* xb, const float* weight, uint8_t* L) {
  const int8_t* values = kIq4nlValues;
  float amax = 0, max = 0;
  for (int j = 0; j < kGroup; ++j) {
    const float ax = std::fabs(xb[j]);
    if (ax > amax) {
      amax = ax;
      max = xb[j];
    }
  }
  if (amax < kGroupMaxEps) return 0.0f;
  float d = -max / values[0];
  float id = 1 / d;
  float sumqx = 0, sumq2 = 0;
  for (int j = 0; j < kGroup; ++j) {
    const int l = nearest_level(values, id * xb[j]);
    L[j] = static_cast<uint8_t>(l);
    const float q = values[l];
    const float w = weight[j];
    sumqx += w * q * xb[j];
    sumq2 += w * q * q;
  }
  d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
  float best = d * sumqx;
  for (int itry = -kTries; itry <= kTries; ++itry) {
    id = (itry + values[0]) / max;
    sumqx = sumq2 = 0;
    for (int j = 0; j < kGroup; ++j) {
      const float q = values[nearest_level(values, id * xb[j])];
      const float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

// The per-element weights: the importance (mean squared activation) times
// the element's own spread, or without an importance matrix x^2.
void group_weights(const float* xb, const float* qw, float sigma2, float* weight) {
  if (qw) {
    for (int j = 0; j < kGroup; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
  } else {
    for (int j = 0; j < kGroup; ++j) weight[j] = xb[j] * xb[j];
  }
}

float mean_square_x2(const float* x, int n) {
  float sigma2 = 0;
  for (int j = 0; j < n; ++j) sigma2 += x[j] * x[j];
  return sigma2 * (2.f / n);
}

void pack_nibbles(const uint8_t* L, uint8_t* qs, int n) {
  for (int i = 0; i < n / 32; ++i)
    for (int j = 0; j < 16; ++j) qs[16 * i + j] = static_cast<uint8_t>(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

}  // namespace

void quantize_row_iq4_nl(const float* x, BlockIQ4_NL* y, int64_t n_per_row, const float* qw) {
  uint8_t L[kGroup];
  float weight[kGroup];
  for (int64_t ib = 0; ib < n_per_row / kGroup; ++ib, x += kGroup) {
    const float sigma2 = mean_square_x2(x, kGroup);
    group_weights(x, qw ? qw + ib * kGroup : nullptr, sigma2, weight);
    const float d = best_group_scale(x, weight, L);
    y[ib].d = fp32_to_fp16(d);
    // Indices again for the unrounded best scale (the search kept those of
    // the amax scale).
    const float id = d ? 1 / d : 0;
    for (int j = 0; j < kGroup; ++j) L[j] = static_cast<uint8_t>(nearest_level(kIq4nlValues, id * x[j]));
    pack_nibbles(L, y[ib].qs, kGroup);
  }
}

void quantize_row_iq4_xs(const float* x, BlockIQ4_XS* y, int64_t n_per_row, const float* qw) {
  constexpr int kSuper = BlockIQ4_XS::kElements;
  constexpr int kGroups = kSuper / kGroup;
  uint8_t L[kSuper];
  float weight[kGroup];
  float scales[kGroups];
  for (int64_t ibl = 0; ibl < n_per_row / kSuper; ++ibl, x += kSuper) {
    BlockIQ4_XS& b = y[ibl];
    const float* qwb = qw ? qw + ibl * kSuper : nullptr;
    const float sigma2 = mean_square_x2(x, kSuper);
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < kGroups; ++ib) {
      const float* xb = x + ib * kGroup;
      group_weights(xb, qwb ? qwb + ib * kGroup : nullptr, sigma2, weight);
      scales[ib] = best_group_scale(xb, weight, L + ib * kGroup);
      const float abs_d = std::fabs(scales[ib]);
      if (abs_d > amax_scale) {
        amax_scale = abs_d;
        max_scale = scales[ib];
      }
    }
    // Group scales become signed 6-bit multiples of d (stored biased by 32).
    const float d = -max_scale / 32;  // -0.0 when every group is zero, as ggml stores it
    b.d = fp32_to_fp16(d);
    b.scales_h = 0;
    std::memset(b.scales_l, 0, sizeof b.scales_l);
    const float id = d ? 1 / d : 0.f;
    for (int ib = 0; ib < kGroups; ++ib) {
      int l = nearest_int(id * scales[ib]);
      l = l < -32 ? -32 : l > 31 ? 31 : l;
      const float dl = d * l;
      const float idl = dl ? 1 / dl : 0.f;
      const float* xb = x + ib * kGroup;
      for (int j = 0; j < kGroup; ++j) L[ib * kGroup + j] = static_cast<uint8_t>(nearest_level(kIq4nlValues, idl * xb[j]));
      l += 32;
      b.scales_l[ib / 2] |= static_cast<uint8_t>((l & 0xf) << (4 * (ib % 2)));
      b.scales_h |= static_cast<uint16_t>((l >> 4) << (2 * (ib % 8)));
    }
    pack_nibbles(L, b.qs, kSuper);
  }
}

}  // namespace moe::quant_detail
