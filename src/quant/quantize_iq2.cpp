// IQ2_XXS, IQ2_XS and IQ2_S quantization, byte-identical to ggml's
// quantize_row_iq2_xxs_impl, quantize_row_iq2_xs_impl and
// quantize_row_iq2_s_impl (ggml-quants.c, llama.cpp 3.22.1).
//
// All three store, per 8 elements, a grid index (the magnitudes: a point of
// an 8-dimensional grid of the levels 1, 3, 5) and the 8 signs, and a 4-bit
// scale per group (32 elements in IQ2_XXS, 16 in the others). IQ2_XXS and
// IQ2_XS keep 7 sign bits and imply the 8th by even parity, so an odd number
// of negative values is first made even by flipping the sign of the element
// that costs least. A group's scale is searched over candidate inverse
// scales around the largest magnitude: at each, every 8-vector is rounded to
// codes 0..2 and, if that vector is not a grid point, replaced by the best of
// its precomputed neighbours (iq_search.h); the candidate with the best
// weighted least-squares fit wins, and the vectors that were off the grid
// are searched again at the winning scale.
//
// Float rules as in quantize.cpp: ggml's operation order, int-to-float
// conversions where C makes them, no FMA (-ffp-contract=off); a one-ulp
// change moves a code.

#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "quant/blocks_iq.h"
#include "quant/iq_search.h"
#include "quant/quantize.h"
#include "quant/quantize_util.h"

namespace moe::quant_detail {

namespace {

constexpr int kSuper = 256;            // QK_K
constexpr int kMaxQ = 3;               // codes 0..2 stand for the levels 1, 3, 5
constexpr float kGroupMaxEps = 1e-15f; // GROUP_MAX_EPS: a group below this is stored as zeros
constexpr float kGroupMaxEpsIq2S = 1e-8f;

// iq2_find_best_neighbour: the neighbour of least weighted squared error at
// `scale` (first one on ties); writes its codes to L, returns its index.
int best_neighbour(const IqSearch& s, const uint16_t* neighbours, const float* xval, const float* weight, float scale,
                   int8_t* L) {
  float best_d2 = FLT_MAX;
  int best = -1;
  for (int j = 1; j <= neighbours[0]; ++j) {
    const std::array<int8_t, 8>& pg = s.points[neighbours[j]];
    float d2 = 0;
    for (int i = 0; i < 8; ++i) {
      const auto q = static_cast<float>(pg[i]);
      const float diff = scale * q - xval[i];
      d2 += weight[i] * diff * diff;
    }
    if (d2 < best_d2) {
      best_d2 = d2;
      best = neighbours[j];
    }
  }
  // ggml asserts here: every error was inf or NaN (non-finite input, or
  // values so large that the squares overflow).
  MOE_ASSERT(best >= 0, "iq2 quantization: no grid point has a finite error (non-finite input?)");
  for (int i = 0; i < 8; ++i) L[i] = static_cast<int8_t>(s.code(best, i));
  return best;
}

// Codes 0..2 of 8 magnitudes at inverse scale id; when they are not a grid
// point, the best neighbour at `scale` instead. Returns whether they were.
bool grid_codes(const IqSearch& s, const float* xval, const float* waux, float id, float scale, int8_t* L) {
  for (int i = 0; i < 8; ++i) {
    const int l = nearest_int(0.5f * (id * xval[i] - 1));
    L[i] = static_cast<int8_t>(l < 0 ? 0 : l > kMaxQ - 1 ? kMaxQ - 1 : l);
  }
  const uint16_t u = iq_code_vector(L);
  if (s.grid_index(u) >= 0) return true;
  best_neighbour(s, s.neighbours_of(u), xval, waux, scale, L);
  return false;
}

// Weighted least-squares sums of xval against the levels 2 L + 1.
void fit_sums(int n, const float* xval, const float* weight, const int8_t* L, float& sumqx, float& sumq2) {
  sumqx = 0;
  sumq2 = 0;
  for (int i = 0; i < n; ++i) {
    const float w = weight[i];
    const auto q = static_cast<float>(2 * L[i] + 1);
    sumqx += w * xval[i] * q;
    sumq2 += w * q * q;
  }
}

// The scale search of one group of n = 16 or 32 magnitudes, shared by the
// three types: candidate inverse scales (5 + 0.1 is) / denom for |is| <=
// ntry, starting from `scale` (kept, with the codes in L, when no candidate
// fits at all). Then the 8-vectors that the winner took off the grid (all of
// them for IQ2_XXS: `redo_all`) are searched again at the winning scale, and
// the scale refitted. Returns the scale; L holds grid codes on return unless
// no candidate fitted.
float search_group(const IqSearch& s, int n, const float* xval, const float* weight, const float* waux, float denom,
                   int ntry, float scale, bool redo_all, int8_t* L) {
  int8_t Laux[32];
  bool on_grid[4] = {true, true, true, true};
  bool on_grid_aux[4];
  float best = 0;
  for (int is = -ntry; is <= ntry; ++is) {
    const float id = (2 * kMaxQ - 1 + static_cast<float>(is) * 0.1f) / denom;
    const float this_scale = 1 / id;
    for (int k = 0; k < n / 8; ++k)
      on_grid_aux[k] = grid_codes(s, xval + 8 * k, waux + 8 * k, id, this_scale, Laux + 8 * k);
    float sumqx, sumq2;
    fit_sums(n, xval, weight, Laux, sumqx, sumq2);
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      scale = sumqx / sumq2;
      best = scale * sumqx;
      std::memcpy(L, Laux, static_cast<size_t>(n));
      std::memcpy(on_grid, on_grid_aux, sizeof on_grid);
    }
  }
  bool redo = false;
  for (int k = 0; k < n / 8; ++k) {
    if (redo_all) on_grid[k] = false;
    redo = redo || !on_grid[k];
  }
  if (redo && scale > 0) {
    const float id = 1 / scale;
    for (int k = 0; k < n / 8; ++k)
      if (!on_grid[k]) grid_codes(s, xval + 8 * k, waux + 8 * k, id, scale, L + 8 * k);
    float sumqx, sumq2;
    fit_sums(n, xval, weight, L, sumqx, sumq2);
    if (sumq2 > 0) scale = sumqx / sumq2;
  }
  return scale;
}

// |x| of 8 elements into xval and their sign bits. With `even_parity` (the
// types that store 7 sign bits) an odd count of negatives is made even by
// giving the element of least weight * x^2 the other sign, in xval and in
// the bits; the 7 low bits are returned.
uint8_t fold_signs(const float* xb, const float* weight, bool even_parity, float* xval) {
  int nflip = 0;
  uint8_t s = 0;
  for (int i = 0; i < 8; ++i) {
    if (xb[i] >= 0) {
      xval[i] = xb[i];
    } else {
      xval[i] = -xb[i];
      ++nflip;
      s = static_cast<uint8_t>(s | (1 << i));
    }
  }
  if (!even_parity) return s;
  if (nflip % 2) {
    int imin = 0;
    float min = weight[0] * xb[0] * xb[0];
    for (int i = 1; i < 8; ++i) {
      const float ax = weight[i] * xb[i] * xb[i];
      if (ax < min) {
        min = ax;
        imin = i;
      }
    }
    xval[imin] = -xval[imin];
    s = static_cast<uint8_t>(s ^ (1 << imin));
  }
  return s & 127;
}

float max_of(const float* x, int n) {
  float max = x[0];
  for (int i = 1; i < n; ++i) max = max > x[i] ? max : x[i];  // ggml's MAX
  return max;
}

// The per-element weights of a group and their square roots (which weight
// the neighbour search). Without an importance matrix (IQ2_S only):
// sigma2 / 4 + x^2.
void group_weights(const float* xb, const float* qw, float sigma2, int n, float* weight, float* waux) {
  if (qw) {
    for (int i = 0; i < n; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
  } else {
    for (int i = 0; i < n; ++i) weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
  }
  for (int i = 0; i < n; ++i) waux[i] = std::sqrt(weight[i]);
}

// IQ2_XS and IQ2_S: one 16-element group. False for a group stored as
// zeros (scale 0, no codes or signs); otherwise L receives the grid codes,
// signs the sign bytes, and scale the group scale.
bool quantize_group16(const IqSearch& s, const float* xb, const float* qw, float sigma2, bool even_parity, float eps,
                      int8_t* L, uint8_t* signs, float& scale) {
  constexpr int n = 16;
  float weight[n], waux[n], xval[n];
  group_weights(xb, qw, sigma2, n, weight, waux);
  for (int k = 0; k < 2; ++k) signs[k] = fold_signs(xb + 8 * k, weight + 8 * k, even_parity, xval + 8 * k);
  const float max = max_of(xval, n);
  std::memset(L, 0, n);
  scale = 0;
  if (max < eps) return false;
  scale = max / (2 * kMaxQ - 1);
  scale = search_group(s, n, xval, weight, waux, max, 9, scale, false, L);
  if (scale < 0) {
    // ggml: "should never happen"; a negative fit flips every sign instead.
    scale = -scale;
    for (int k = 0; k < 2; ++k) signs[k] = static_cast<uint8_t>(even_parity ? ~signs[k] & 127 : ~signs[k]);
  }
  return true;
}

// IQ2_XS and IQ2_S: the sixteen group scales as 4-bit codes against the
// super-block's inverse scale id, two per byte.
void pack_scales16(const float* scales, float id, uint8_t* out) {
  for (int ib = 0; ib < kSuper / 16; ++ib) {
    const int l = iq_scale_code(id, scales[ib], 15);
    out[ib / 2] = static_cast<uint8_t>(ib % 2 == 0 ? l : out[ib / 2] | l << 4);
  }
}

}  // namespace

void quantize_row_iq2_xxs(const float* x, BlockIQ2_XXS* y, int64_t n_per_row, const float* qw) {
  MOE_ASSERT(qw != nullptr, "iq2_xxs quantization needs importance weights");
  const IqSearch& s = iq_search(IqGrid::k256);
  constexpr int n = 32;  // group size
  for (int64_t ibl = 0; ibl < n_per_row / kSuper; ++ibl) {
    BlockIQ2_XXS& b = y[ibl];
    const float* xbl = x + kSuper * ibl;
    const float* qwbl = qw + kSuper * ibl;
    b.d = fp32_to_fp16(0.f);
    // Per group: 4 grid indices (bytes), then 4 x 7 sign bits and the scale.
    uint32_t q2[2 * (kSuper / n)] = {};
    float scales[kSuper / n];
    float max_scale = 0;
    const float sigma2 = sum_squares(xbl, kSuper) / kSuper;
    for (int ib = 0; ib < kSuper / n; ++ib) {
      const float* xb = xbl + n * ib;
      float weight[n], waux[n], xval[n];
      int8_t L[n];
      uint8_t signs[4];
      group_weights(xb, qwbl + n * ib, sigma2, n, weight, waux);
      for (int k = 0; k < 4; ++k) signs[k] = fold_signs(xb + 8 * k, weight + 8 * k, true, xval + 8 * k);
      scales[ib] = 0;
      if (max_of(xval, n) < kGroupMaxEps) continue;
      float scale = make_qp_quants(n, kMaxQ + 1, xval, reinterpret_cast<uint8_t*>(L), weight);
      const float eff_max = scale * kMaxQ;
      if (eff_max <= 0) continue;
      scale = search_group(s, n, xval, weight, waux, eff_max, 6, scale, true, L);
      if (scale < 0) {
        scale = -scale;
        for (int k = 0; k < 4; ++k) signs[k] = static_cast<uint8_t>(~signs[k] & 127);
      }
      for (int k = 0; k < 4; ++k) {
        q2[2 * ib + 0] |= static_cast<uint32_t>(s.grid_index(iq_code_vector(L + 8 * k))) << 8 * k;
        q2[2 * ib + 1] |= static_cast<uint32_t>(signs[k]) << 7 * k;
      }
      scales[ib] = scale;
      max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale) {
      std::memset(b.qs, 0, sizeof b.qs);
      continue;
    }
    const float d = max_scale / 31;
    b.d = fp32_to_fp16(d);
    const float id = 1 / d;
    for (int ib = 0; ib < kSuper / n; ++ib)
      q2[2 * ib + 1] |= static_cast<uint32_t>(iq_scale_code(id, scales[ib], 15)) << 28;
    std::memcpy(b.qs, q2, sizeof b.qs);
  }
}

void quantize_row_iq2_xs(const float* x, BlockIQ2_XS* y, int64_t n_per_row, const float* qw) {
  MOE_ASSERT(qw != nullptr, "iq2_xs quantization needs importance weights");
  const IqSearch& s = iq_search(IqGrid::k512);
  constexpr int n = 16;
  for (int64_t ibl = 0; ibl < n_per_row / kSuper; ++ibl) {
    BlockIQ2_XS& b = y[ibl];
    const float* xbl = x + kSuper * ibl;
    b.d = fp32_to_fp16(0.f);
    std::memset(b.scales, 0, sizeof b.scales);
    uint16_t q2[2 * (kSuper / n)] = {};  // per 8 elements: 9-bit grid index | 7 sign bits
    float scales[kSuper / n];
    float max_scale = 0;
    const float sigma2 = sum_squares(xbl, kSuper) / kSuper;
    for (int ib = 0; ib < kSuper / n; ++ib) {
      int8_t L[n];
      uint8_t signs[2];
      float scale;
      const bool stored =
          quantize_group16(s, xbl + n * ib, qw + kSuper * ibl + n * ib, sigma2, true, kGroupMaxEps, L, signs, scale);
      scales[ib] = scale;
      if (!stored) continue;
      for (int k = 0; k < 2; ++k)
        q2[2 * ib + k] = static_cast<uint16_t>(s.grid_index(iq_code_vector(L + 8 * k)) | (signs[k] << 9));
      max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale) {
      std::memset(b.qs, 0, sizeof b.qs);
      continue;
    }
    const float d = max_scale / 31;
    b.d = fp32_to_fp16(d);
    pack_scales16(scales, 1 / d, b.scales);
    std::memcpy(b.qs, q2, sizeof b.qs);
  }
}

void quantize_row_iq2_s(const float* x, BlockIQ2_S* y, int64_t n_per_row, const float* qw) {
  const IqSearch& s = iq_search(IqGrid::k1024);
  constexpr int n = 16;
  for (int64_t ibl = 0; ibl < n_per_row / kSuper; ++ibl) {
    BlockIQ2_S& b = y[ibl];
    std::memset(&b, 0, sizeof b);
    const float* xbl = x + kSuper * ibl;
    float scales[kSuper / n];
    float max_scale = 0;
    const float sigma2 = 2 * sum_squares(xbl, kSuper) / kSuper;
    for (int ib = 0; ib < kSuper / n; ++ib) {
      int8_t L[n];
      uint8_t signs[2];
      float scale;
      const float* qwb = qw ? qw + kSuper * ibl + n * ib : nullptr;
      const bool stored = quantize_group16(s, xbl + n * ib, qwb, sigma2, false, kGroupMaxEpsIq2S, L, signs, scale);
      scales[ib] = scale;
      if (!stored) continue;
      for (int k = 0; k < 2; ++k) {
        // 10-bit grid index: low byte in qs, top 2 bits in qh; all 8 sign
        // bits in the second half of qs.
        const int i8 = 2 * ib + k;
        const int index = s.grid_index(iq_code_vector(L + 8 * k));
        b.qs[i8] = static_cast<uint8_t>(index & 255);
        b.qh[i8 / 4] = static_cast<uint8_t>(b.qh[i8 / 4] | (index >> 8) << 2 * (i8 % 4));
        b.qs[kSuper / 8 + i8] = signs[k];
      }
      max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale) continue;
    const float d = max_scale / 31;
    b.d = fp32_to_fp16(d * 0.9875f);  // ggml's factor; the codes are still rounded against d
    pack_scales16(scales, 1 / d, b.scales);
  }
}

}  // namespace moe::quant_detail
