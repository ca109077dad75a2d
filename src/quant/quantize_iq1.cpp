// IQ1_S and IQ1_M quantization, byte-identical to ggml's
// quantize_row_iq1_s_impl and quantize_row_iq1_m_impl (ggml-quants.c,
// llama.cpp 3.22.1, called through quantize_iq1_s / quantize_iq1_m).
//
// Every element is s * (g + delta) with g in {-1, 0, +1} from a point of the
// 2048-point grid (per 8 elements) and delta = +-1/8 per group (IQ1_S: per
// 32 elements; IQ1_M: per 8, so a 16-element group picks one of four sign
// pairs). With three levels the weighted least-squares problem is solved
// exactly: sort the group's values, and every split of the sorted order into
// a low, middle and high run is a candidate assignment; prefix sums give
// each split's fit in O(1). The winning assignment is then snapped to the
// grid (via the neighbour lists of iq_search.h where it is off the grid) and
// the scale refitted. Group scales become 3-bit codes against one fp16 scale
// per super-block, which ggml multiplies by fudge factors before storing.
//
// Float rules as in quantize.cpp: ggml's operation order, int-to-float
// conversions where C makes them, no FMA (-ffp-contract=off).

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "quant/blocks_iq.h"
#include "quant/iq_grids.h"
#include "quant/iq_search.h"
#include "quant/quantize.h"
#include "quant/quantize_util.h"

namespace moe::quant_detail {

namespace {

constexpr int kSuper = 256;  // QK_K
constexpr float kGroupMaxEpsIq1S = 1e-12f;  // ggml's GROUP_MAX_EPS_IQ1_S / _IQ1_M: groups
constexpr float kGroupMaxEpsIq1M = 1e-7f;   // below these are stored as zeros

// The three levels g + delta for delta = +1/8 (x_p) and -1/8 (x_m), in
// ggml's float arithmetic (IQ1S_DELTA == IQ1M_DELTA == kIq1Delta).
constexpr float kLevelsP[3] = {-1 + kIq1Delta, kIq1Delta, 1 + kIq1Delta};
constexpr float kLevelsM[3] = {-1 - kIq1Delta, -kIq1Delta, 1 - kIq1Delta};

float abs_max(const float* x, int n) {
  float max = std::fabs(x[0]);
  for (int i = 1; i < n; ++i) max = max > std::fabs(x[i]) ? max : std::fabs(x[i]);  // ggml's MAX
  return max;
}

// The indices of xb in ascending order of value. ggml qsorts (value, index)
// pairs comparing the values only; glibc's qsort is a merge sort for arrays
// this small (it only falls back to quicksort when it cannot allocate), so
// equal values keep their index order: a stable sort gives the same order.
void sort_indices(const float* xb, int n, int* order) {
  for (int j = 0; j < n; ++j) order[j] = j;
  std::stable_sort(order, order + n, [xb](int a, int b) { return xb[a] < xb[b]; });
}

// iq1_find_best_neighbour2: the neighbour of least weighted squared error
// with the levels `levels` at `scale` (first one on ties); writes its codes
// to L, returns its index.
int best_neighbour(const IqSearch& s, const uint16_t* neighbours, const float* xval, const float* weight, float scale,
                   const float* levels, int8_t* L) {
  float best_score = FLT_MAX;
  int best = -1;
  for (int j = 1; j <= neighbours[0]; ++j) {
    float d2 = 0;
    for (int i = 0; i < 8; ++i) {
      const float q = levels[s.code(neighbours[j], i)];
      const float w = weight[i];
      const float diff = scale * q - xval[i];
      d2 += w * diff * diff;
    }
    if (d2 < best_score) {
      best_score = d2;
      best = neighbours[j];
    }
  }
  // ggml then scans the whole grid, indexing xval by the grid index (reading
  // past the 8 values); that needs every neighbour's error to be inf or NaN,
  // i.e. non-finite input or overflow, where ggml's search fails as well.
  MOE_ASSERT(best >= 0, "iq1 quantization: no grid point has a finite error (non-finite input?)");
  for (int i = 0; i < 8; ++i) L[i] = static_cast<int8_t>(s.code(best, i));
  return best;
}

// Snaps the codes L of 8 elements to the grid (keeping them when they are a
// grid point). Returns the grid index; sets *on_grid false when it moved.
int snap_to_grid(const IqSearch& s, const float* xb, const float* weight, float scale, const float* levels, int8_t* L,
                 bool* on_grid) {
  const uint16_t u = iq_code_vector(L);
  const int index = s.grid_index(u);
  if (index >= 0) return index;
  *on_grid = false;
  return best_neighbour(s, s.neighbours_of(u), xb, weight, scale, levels, L);
}

// Weighted least-squares sums of 8 values against grid point `index` with
// the given levels, times `mult`, added to sumqx and sumq2.
void add_fit(const IqSearch& s, int index, const float* levels, float mult, const float* xb, const float* weight,
             float& sumqx, float& sumq2) {
  for (int j = 0; j < 8; ++j) {
    const float w = weight[j];
    const float q = levels[s.code(index, j)] * mult;
    sumqx += w * q * xb[j];
    sumq2 += w * q * q;
  }
}

// Writes the codes of the chosen split (sorted positions [0, i1) low,
// [i1, i2) middle, the rest high) back in element order.
void split_codes(const int* order, int n, int i1, int i2, int8_t* L) {
  for (int j = 0; j < n; ++j) L[order[j]] = static_cast<int8_t>(j < i1 ? 0 : j < i2 ? 1 : 2);
}

}  // namespace

void quantize_row_iq1_s(const float* x, BlockIQ1_S* y, int64_t n_per_row, const float* qw) {
  MOE_ASSERT(qw != nullptr, "iq1_s quantization needs importance weights");
  constexpr int n = 32;  // IQ1S_BLOCK_SIZE
  constexpr int kGroups = kSuper / n;
  const IqSearch& s = iq_search(IqGrid::k2048);
  for (int64_t ibl = 0; ibl < n_per_row / kSuper; ++ibl) {
    BlockIQ1_S& b = y[ibl];
    b.d = fp32_to_fp16(0.f);
    std::memset(b.qs, 0, sizeof b.qs);
    std::memset(b.qh, 0, sizeof b.qh);
    const float* xbl = x + kSuper * ibl;
    float scales[kGroups];
    int shifts[kGroups];  // the sign of delta: +1 (x_p) or -1 (x_m)
    float max_scale = 0;
    const float sigma2 = 2 * sum_squares(xbl, kSuper) / kSuper;
    for (int ib = 0; ib < kGroups; ++ib) {
      const float* xb = xbl + n * ib;
      const float* qwb = qw + kSuper * ibl + n * ib;
      float weight[n];
      for (int i = 0; i < n; ++i) weight[i] = qwb[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
      scales[ib] = 0;
      shifts[ib] = 1;
      const float max = abs_max(xb, n);
      if (max < kGroupMaxEpsIq1S) continue;
      int order[n];
      sort_indices(xb, n, order);
      float sumx[n + 1], sumw[n + 1];
      sumx[0] = sumw[0] = 0;
      for (int j = 0; j < n; ++j) {
        const int i = order[j];
        sumx[j + 1] = sumx[j] + weight[i] * xb[i];
        sumw[j + 1] = sumw[j] + weight[i];
      }
      float best_score = -FLT_MAX, scale = max;
      int besti1 = -1, besti2 = -1, best_shift = 0;
      for (int i1 = 0; i1 <= n; ++i1) {
        for (int i2 = i1; i2 <= n; ++i2) {
          for (const int shift : {1, -1}) {
            const float* v = shift == 1 ? kLevelsP : kLevelsM;
            const float sumqx =
                (sumx[i1] - sumx[0]) * v[0] + (sumx[i2] - sumx[i1]) * v[1] + (sumx[n] - sumx[i2]) * v[2];
            const float sumq2 = (sumw[i1] - sumw[0]) * v[0] * v[0] + (sumw[i2] - sumw[i1]) * v[1] * v[1] +
                                (sumw[n] - sumw[i2]) * v[2] * v[2];
            if (sumq2 > 0 && sumqx * sumqx > best_score * sumq2) {
              scale = sumqx / sumq2;
              best_score = scale * sumqx;
              besti1 = i1;
              besti2 = i2;
              best_shift = shift;
            }
          }
        }
      }
      if (besti1 < 0 || besti2 < 0 || best_shift == 0) continue;
      int8_t L[n];
      split_codes(order, n, besti1, besti2, L);
      if (scale < 0) {
        // Negative fit: mirror the codes, which mirrors delta as well.
        for (int j = 0; j < n; ++j) L[j] = static_cast<int8_t>(2 - L[j]);
        scale = -scale;
        best_shift = -best_shift;
      }
      const float* levels = best_shift == 1 ? kLevelsP : kLevelsM;
      bool all_on_grid = true;
      int index[n / 8];
      for (int k = 0; k < n / 8; ++k)
        index[k] = snap_to_grid(s, xb + 8 * k, weight + 8 * k, scale, levels, L + 8 * k, &all_on_grid);
      if (!all_on_grid) {
        float sumqx = 0, sumq2 = 0;
        for (int k = 0; k < n / 8; ++k) add_fit(s, index[k], levels, 1.0f, xb + 8 * k, weight + 8 * k, sumqx, sumq2);
        if (sumqx > 0 && sumq2 > 0) scale = sumqx / sumq2;
      }
      uint16_t h = 0;
      for (int k = 0; k < n / 8; ++k) {
        b.qs[(n / 8) * ib + k] = static_cast<uint8_t>(index[k] & 255);
        h = static_cast<uint16_t>(h | (index[k] >> 8) << 3 * k);
      }
      b.qh[ib] = h;
      scales[ib] = scale;
      shifts[ib] = best_shift;
      max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale) continue;
    const float d = max_scale / 15;
    b.d = fp32_to_fp16(d * 1.125f);  // ggml's fudge factor; the codes are still rounded against d
    const float id = 1 / d;
    for (int ib = 0; ib < kGroups; ++ib) {
      int l = iq_scale_code(id, scales[ib], 7);
      if (shifts[ib] == -1) l |= 8;
      b.qh[ib] = static_cast<uint16_t>(b.qh[ib] | l << 12);
    }
  }
}

void quantize_row_iq1_m(const float* x, BlockIQ1_M* y, int64_t n_per_row, const float* qw) {
  // ggml accepts a null imatrix here (weights x^2), though llama-quantize
  // does not offer IQ1_M without one.
  constexpr int n = 16;  // IQ1M_BLOCK_SIZE
  constexpr int kGroups = kSuper / n;
  // The delta signs of a group's two halves, by case k: 0 (+, +), 1 (+, -),
  // 2 (-, +), 3 (-, -); stored as bits 3 and 7 of qh.
  constexpr uint8_t kMasks[4] = {0x00, 0x80, 0x08, 0x88};
  const auto half_levels = [](int k, int half) {
    return (half == 0 ? k < 2 : k % 2 == 0) ? kLevelsP : kLevelsM;
  };
  const IqSearch& s = iq_search(IqGrid::k2048);
  for (int64_t ibl = 0; ibl < n_per_row / kSuper; ++ibl) {
    BlockIQ1_M& b = y[ibl];
    std::memset(b.qs, 0, sizeof b.qs);
    std::memset(b.qh, 0, sizeof b.qh);
    std::memset(b.scales, 0, sizeof b.scales);
    const float* xbl = x + kSuper * ibl;
    float scales[kGroups];
    int shifts[kGroups];
    float max_scale = 0;
    const float sigma2 = 2 * sum_squares(xbl, kSuper) / kSuper;
    const auto group_weights = [&](int ib, float* weight) {
      const float* xb = xbl + n * ib;
      if (qw) {
        const float* qwb = qw + kSuper * ibl + n * ib;
        for (int i = 0; i < n; ++i) weight[i] = qwb[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
      } else {
        for (int i = 0; i < n; ++i) weight[i] = xb[i] * xb[i];
      }
    };
    for (int ib = 0; ib < kGroups; ++ib) {
      const float* xb = xbl + n * ib;
      float weight[n];
      group_weights(ib, weight);
      scales[ib] = 0;
      shifts[ib] = 0;
      const float max = abs_max(xb, n);
      if (max < kGroupMaxEpsIq1M) continue;
      int order[n];
      sort_indices(xb, n, order);
      float best_score = -FLT_MAX, scale = max;
      int besti1 = -1, besti2 = -1, best_k = -1;
      {
        // Prefix sums per half of the group (each half has its own delta).
        // With level steps of exactly 1, a split's sum over the three runs
        // collapses to T * v[2] - px[i1] - px[i2].
        float px[2][n + 1], pw[2][n + 1];
        px[0][0] = px[1][0] = 0;
        pw[0][0] = pw[1][0] = 0;
        for (int j = 0; j < n; ++j) {
          const int i = order[j];
          const int h = i < n / 2 ? 0 : 1;
          px[h][j + 1] = px[h][j] + weight[i] * xb[i];
          px[1 - h][j + 1] = px[1 - h][j];
          pw[h][j + 1] = pw[h][j] + weight[i];
          pw[1 - h][j + 1] = pw[1 - h][j];
        }
        const float txs[2] = {px[0][n], px[1][n]};
        const float tws[2] = {pw[0][n], pw[1][n]};
        const float p2 = kLevelsP[2], m2 = kLevelsM[2];
        const float cp1 = kLevelsP[0] * kLevelsP[0] - kLevelsP[1] * kLevelsP[1];
        const float cp2 = kLevelsP[1] * kLevelsP[1] - kLevelsP[2] * kLevelsP[2];
        const float cm1 = kLevelsM[0] * kLevelsM[0] - kLevelsM[1] * kLevelsM[1];
        const float cm2 = kLevelsM[1] * kLevelsM[1] - kLevelsM[2] * kLevelsM[2];
        for (int i1 = 0; i1 <= n; ++i1) {
          for (int i2 = i1; i2 <= n; ++i2) {
            float qx_p[2], qx_m[2], q2_p[2], q2_m[2];
            for (int h = 0; h < 2; ++h) {
              const float sx = px[h][i1] + px[h][i2];
              qx_p[h] = txs[h] * p2 - sx;
              qx_m[h] = txs[h] * m2 - sx;
              q2_p[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1 + pw[h][i2] * cp2;
              q2_m[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1 + pw[h][i2] * cm2;
            }
            const float sumqx[4] = {qx_p[0] + qx_p[1], qx_p[0] + qx_m[1], qx_m[0] + qx_p[1], qx_m[0] + qx_m[1]};
            const float sumq2[4] = {q2_p[0] + q2_p[1], q2_p[0] + q2_m[1], q2_m[0] + q2_p[1], q2_m[0] + q2_m[1]};
            for (int k = 0; k < 4; ++k) {
              if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > best_score * sumq2[k]) {
                scale = sumqx[k] / sumq2[k];
                best_score = scale * sumqx[k];
                besti1 = i1;
                besti2 = i2;
                best_k = k;
              }
            }
          }
        }
      }
      if (besti1 < 0 || besti2 < 0 || best_k < 0) continue;
      int8_t L[n];
      split_codes(order, n, besti1, besti2, L);
      if (scale < 0) {
        for (int j = 0; j < n; ++j) L[j] = static_cast<int8_t>(2 - L[j]);
        scale = -scale;
        best_k = 3 - best_k;  // both deltas change sign
      }
      bool all_on_grid = true;
      int index[2];
      for (int k = 0; k < 2; ++k)
        index[k] = snap_to_grid(s, xb + 8 * k, weight + 8 * k, scale, half_levels(best_k, k), L + 8 * k, &all_on_grid);
      if (!all_on_grid) {
        float sumqx = 0, sumq2 = 0;
        for (int k = 0; k < 2; ++k)
          add_fit(s, index[k], half_levels(best_k, k), 1.0f, xb + 8 * k, weight + 8 * k, sumqx, sumq2);
        if (sumqx > 0 && sumq2 > 0) scale = sumqx / sumq2;
      }
      b.qs[2 * ib + 0] = static_cast<uint8_t>(index[0] & 255);
      b.qs[2 * ib + 1] = static_cast<uint8_t>(index[1] & 255);
      b.qh[ib] = static_cast<uint8_t>((index[0] >> 8) | ((index[1] >> 8) << 4));
      scales[ib] = scale;
      shifts[ib] = best_k;
      max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale) continue;

    // The super-block scale: the least-squares fit of the whole block with
    // the group codes already rounded (unlike IQ1_S's max_scale / 15).
    uint16_t sc[4] = {};
    float d = max_scale / 15;
    const float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int ib = 0; ib < kGroups; ++ib) {
      const int l = iq_scale_code(id, scales[ib], 7);
      sc[ib / 4] = static_cast<uint16_t>(sc[ib / 4] | l << 3 * (ib % 4));
      b.qh[ib] = static_cast<uint8_t>(b.qh[ib] | kMasks[shifts[ib]]);
      float weight[n];
      group_weights(ib, weight);
      const float* xb = xbl + n * ib;
      for (int k = 0; k < 2; ++k) {
        const int index = b.qs[2 * ib + k] + ((b.qh[ib] << (8 - 4 * k)) & 0x700);
        add_fit(s, index, half_levels(shifts[ib], k), static_cast<float>(2 * l + 1), xb + 8 * k, weight + 8 * k, sumqx,
                sumq2);
      }
    }
    if (sumq2 > 0) d = sumqx / sumq2;
    const uint16_t d16 = fp32_to_fp16(d * 1.1125f);  // ggml's fudge factor
    sc[0] = static_cast<uint16_t>(sc[0] | (d16 & 0x000f) << 12);
    sc[1] = static_cast<uint16_t>(sc[1] | (d16 & 0x00f0) << 8);
    sc[2] = static_cast<uint16_t>(sc[2] | (d16 & 0x0f00) << 4);
    sc[3] = static_cast<uint16_t>(sc[3] | (d16 & 0xf000));
    std::memcpy(b.scales, sc, sizeof sc);
  }
}

}  // namespace moe::quant_detail
