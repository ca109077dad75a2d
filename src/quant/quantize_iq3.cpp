// IQ3_XXS and IQ3_S quantization, byte-identical to ggml's
// quantize_row_iq3_xxs_impl and quantize_row_iq3_s_impl (llama.cpp 3.22.1),
// with or without an importance matrix.
//
// Both formats store each 4-element quad of |x| as an index into a grid of
// points whose elements are odd levels 2l+1, l = 0..7 (256 points for
// IQ3_XXS, 512 for IQ3_S), and the signs apart. Per 32-element group the
// quantizer tries a range of scales; at each, every quad is rounded to
// levels and, when that level vector is not a grid point, replaced by the
// best of its precomputed nearest grid points (weighted error). The scale
// with the best weighted least-squares fit wins, off-grid quads are re-picked
// at that scale, and the group scales become 4-bit multiples of one fp16
// super-block scale. Every float operation is in ggml's order (no FMA:
// -ffp-contract=off), because a one-ulp change moves an index.

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "quant/blocks_iq.h"
#include "quant/iq_grids.h"
#include "quant/iq_search.h"  // iq_scale_code
#include "quant/quantize.h"
#include "quant/quantize_util.h"

namespace moe::quant_detail {

namespace {

constexpr int kMaxQ = 8;                 // levels per element
constexpr int kGroup = 32;               // elements per scale
constexpr int kQuads = kGroup / 4;       // grid points per group
constexpr int kSuper = 256;              // elements per super-block
constexpr int kGroups = kSuper / kGroup;
constexpr int kMapSize = 1 << 12;        // every 4 x 3-bit level vector
constexpr float kGroupMaxEpsXxs = 1e-8f; // an IQ3_XXS group this small is stored as zeros

// ggml's iq3xs_init_impl data for one grid: the points (int8 bytes 2l+1,
// element 0 lowest), the map from a level vector (element i in bits 3i..3i+2)
// to its point, and for level vectors that are no point a list of candidate
// points to search instead. Immutable once built.
struct Iq3Search {
  std::vector<uint32_t> grid;
  // >= 0: grid index; < 0: -(offset + 1) of the vector's entry in
  // neighbours, which holds the count and then the grid indices.
  std::array<int, kMapSize> map;
  std::vector<uint16_t> neighbours;

  const uint16_t* neighbours_of(int code) const { return neighbours.data() + (-map[code] - 1); }
};

// The search data of a grid given as byte points (iq_grids()) whose byte
// value v has level v >> level_shift. The candidates of a level vector off
// the grid are the grid points at its `nwant` smallest distinct squared
// distances, ordered by (distance, index): ggml sorts the same pairs with
// qsort and a comparator that orders them fully, so the order is the same,
// and it matters, since the search keeps the first of equally good points.
Iq3Search build_search(const uint32_t* points, int n, int level_shift, int nwant) {
  Iq3Search s;
  s.grid.resize(n);
  s.map.fill(-1);
  for (int j = 0; j < n; ++j) {
    uint32_t g = 0;
    int code = 0;
    for (int i = 0; i < 4; ++i) {
      const int l = ((points[j] >> (8 * i)) & 0xff) >> level_shift;
      g |= static_cast<uint32_t>(2 * l + 1) << (8 * i);
      code |= l << (3 * i);
    }
    s.grid[j] = g;
    s.map[code] = j;
  }
  std::vector<std::pair<int, int>> dist2(n);  // (squared distance, grid index)
  for (int code = 0; code < kMapSize; ++code) {
    if (s.map[code] >= 0) continue;
    for (int j = 0; j < n; ++j) {
      int d2 = 0;
      for (int i = 0; i < 4; ++i) {
        const int diff = static_cast<int>((s.grid[j] >> (8 * i)) & 0xff) - (2 * ((code >> (3 * i)) & 7) + 1);
        d2 += diff * diff;
      }
      dist2[j] = {d2, j};
    }
    std::sort(dist2.begin(), dist2.end());
    const size_t start = s.neighbours.size();
    s.map[code] = -static_cast<int>(start + 1);
    s.neighbours.push_back(0);
    int d2 = dist2[0].first, nhave = 1;
    for (const auto& [dj, j] : dist2) {
      if (dj > d2) {
        if (nhave == nwant) break;
        d2 = dj;
        ++nhave;
      }
      s.neighbours.push_back(static_cast<uint16_t>(j));
    }
    s.neighbours[start] = static_cast<uint16_t>(s.neighbours.size() - start - 1);
  }
  return s;
}

// ggml searches two distances deep in the 256-point grid, three in the
// sparser-per-volume 512-point one.
const Iq3Search& search_xxs() {
  static const Iq3Search s = build_search(iq_grids().iq3xxs.data(), 256, 3, 2);  // bytes 4, 12, .., 62
  return s;
}
const Iq3Search& search_s() {
  static const Iq3Search s = build_search(iq_grids().iq3s.data(), 512, 1, 3);  // bytes 1, 3, .., 15
  return s;
}

int8_t grid_byte(uint32_t point, int i) { return static_cast<int8_t>((point >> (8 * i)) & 0xff); }

// ggml's iq3_find_best_neighbour: the candidate point of least weighted
// error at `scale` (the first on ties); writes its levels into L.
int best_neighbour(const Iq3Search& s, const uint16_t* neighbours, const float* xval, const float* weight,
                   float scale, int8_t* L) {
  const int num = neighbours[0];
  MOE_ASSERT(num > 0, "iq3: empty neighbour list");
  float best_d2 = FLT_MAX;
  int grid_index = -1;
  for (int j = 1; j <= num; ++j) {
    const uint32_t pg = s.grid[neighbours[j]];
    float d2 = 0;
    for (int i = 0; i < 4; ++i) {
      const float q = grid_byte(pg, i);
      const float diff = scale * q - xval[i];
      d2 += weight[i] * diff * diff;
    }
    if (d2 < best_d2) {
      best_d2 = d2;
      grid_index = neighbours[j];
    }
  }
  MOE_ASSERT(grid_index >= 0, "iq3: no candidate point has a finite error (non-finite or huge input)");
  for (int i = 0; i < 4; ++i) L[i] = static_cast<int8_t>((grid_byte(s.grid[grid_index], i) - 1) / 2);
  return grid_index;
}

// The level vector of quad xq at inverse scale id, clamped to 0..7.
int quad_code(const float* xq, float id, int8_t* L) {
  int u = 0;
  for (int i = 0; i < 4; ++i) {
    int l = nearest_int(0.5f * (id * xq[i] - 1));
    l = std::max(0, std::min(kMaxQ - 1, l));
    if (L) L[i] = static_cast<int8_t>(l);
    u |= l << (3 * i);
  }
  return u;
}

// Weighted least-squares terms of the group's levels (value 2l+1).
void fit_terms(const int8_t* L, const float* xval, const float* weight, float& sumqx, float& sumq2) {
  sumqx = 0;
  sumq2 = 0;
  for (int i = 0; i < kGroup; ++i) {
    const float w = weight[i];
    const float q = 2 * L[i] + 1;
    sumqx += w * xval[i] * q;
    sumq2 += w * q * q;
  }
}

// How the two ggml functions differ in the group search.
struct Variant {
  int n_steps;            // candidate scales (15 + 0.2 is) / max, is = -n_steps..n_steps
  bool assume_on_grid;    // IQ3_XXS starts with every quad "on grid" and re-picks only
                          // those found off it; IQ3_S starts with none and re-picks all
};
constexpr Variant kXxs{15, true};
constexpr Variant kS{9, false};

// The search of one group with max(xval) = max > 0: returns the scale and
// leaves the levels in L (as ggml, a group no candidate improves keeps
// L = 0 and scale max / 15).
float search_group(const Iq3Search& s, const Variant& v, const float* xval, const float* weight, const float* waux,
                   float max, int8_t* L) {
  int8_t Laux[kGroup];
  bool on_grid[kQuads], on_grid_aux[kQuads];
  std::memset(L, 0, kGroup);
  float best = 0;
  float scale = max / (2 * kMaxQ - 1);
  std::fill(on_grid, on_grid + kQuads, v.assume_on_grid);
  for (int is = -v.n_steps; is <= v.n_steps; ++is) {
    const float id = (2 * kMaxQ - 1 + is * 0.2f) / max;
    const float this_scale = 1 / id;
    for (int k = 0; k < kQuads; ++k) {
      const int u = quad_code(xval + 4 * k, id, Laux + 4 * k);
      on_grid_aux[k] = s.map[u] >= 0;
      if (!on_grid_aux[k])
        best_neighbour(s, s.neighbours_of(u), xval + 4 * k, waux + 4 * k, this_scale, Laux + 4 * k);
    }
    float sumqx, sumq2;
    fit_terms(Laux, xval, weight, sumqx, sumq2);
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      scale = sumqx / sumq2;
      best = scale * sumqx;
      std::memcpy(L, Laux, kGroup);
      std::copy(on_grid_aux, on_grid_aux + kQuads, on_grid);
    }
  }
  const bool any_off = std::count(on_grid, on_grid + kQuads, false) > 0;
  if (any_off && scale > 0) {
    // Re-pick at the winning scale (ggml's IQ3_S comments out the skip of
    // quads already on the grid, so it re-picks them too).
    const float id = 1 / scale;
    for (int k = 0; k < kQuads; ++k) {
      if (v.assume_on_grid && on_grid[k]) continue;
      const int u = quad_code(xval + 4 * k, id, nullptr);
      int grid_index = s.map[u];
      if (grid_index < 0)
        grid_index = best_neighbour(s, s.neighbours_of(u), xval + 4 * k, waux + 4 * k, scale, L + 4 * k);
      for (int i = 0; i < 4; ++i) L[4 * k + i] = static_cast<int8_t>((grid_byte(s.grid[grid_index], i) - 1) / 2);
    }
    float sumqx, sumq2;
    fit_terms(L, xval, weight, sumqx, sumq2);
    if (sumq2 > 0) scale = sumqx / sumq2;
  }
  return scale;
}

// The grid index of quad k's levels, which the search guarantees exist.
int grid_index_of(const Iq3Search& s, const int8_t* L, int k) {
  int u = 0;
  for (int i = 0; i < 4; ++i) u |= L[4 * k + i] << (3 * i);
  const int gi = s.map[u];
  MOE_ASSERT(gi >= 0, "iq3: levels %d %d %d %d are not on the grid", L[4 * k], L[4 * k + 1], L[4 * k + 2],
             L[4 * k + 3]);
  return gi;
}

// Twice the mean square of a super-block, the spread the importance is
// scaled by.
float super_block_sigma2(const float* xbl) {
  float sumx2 = 0;
  for (int i = 0; i < kSuper; ++i) sumx2 += xbl[i] * xbl[i];
  return 2 * sumx2 / kSuper;
}
// The per-element weights of a group and their square roots (the weights of
// the neighbour search): the importance times the element's spread, or
// without an importance matrix x^2.
void group_weights(const float* xb, const float* qw, float sigma2, float* weight, float* waux) {
  if (qw) {
    for (int i = 0; i < kGroup; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
  } else {
    for (int i = 0; i < kGroup; ++i) weight[i] = xb[i] * xb[i];
  }
  for (int i = 0; i < kGroup; ++i) waux[i] = std::sqrt(weight[i]);
}

float max_of(const float* xval) {
  float max = xval[0];
  for (int i = 1; i < kGroup; ++i) max = max > xval[i] ? max : xval[i];  // ggml's MAX, argument order kept
  return max;
}

}  // namespace

void quantize_row_iq3_xxs(const float* x, BlockIQ3_XXS* y, int64_t n_per_row, const float* qw) {
  const Iq3Search& s = search_xxs();
  float scales[kGroups], weight[kGroup], waux[kGroup], xval[kGroup];
  int8_t L[kGroup];
  for (int64_t ibl = 0; ibl < n_per_row / kSuper; ++ibl) {
    BlockIQ3_XXS& b = y[ibl];
    std::memset(&b, 0, sizeof b);
    const float* xbl = x + kSuper * ibl;
    const float sigma2 = super_block_sigma2(xbl);
    uint32_t scales_and_signs[kGroups] = {};
    float max_scale = 0;
    for (int ib = 0; ib < kGroups; ++ib) {
      const float* xb = xbl + kGroup * ib;
      group_weights(xb, qw ? qw + kSuper * ibl + kGroup * ib : nullptr, sigma2, weight, waux);
      // Only 7 sign bits per 8 elements are stored, the 8th making the count
      // of minus signs even; with an odd count the element of least
      // weighted x^2 takes the wrong sign (its xval turns negative).
      uint8_t block_signs[4];
      for (int k = 0; k < 4; ++k) {
        int nflip = 0;
        uint8_t sg = 0;
        for (int i = 0; i < 8; ++i) {
          if (xb[8 * k + i] >= 0) {
            xval[8 * k + i] = xb[8 * k + i];
          } else {
            xval[8 * k + i] = -xb[8 * k + i];
            ++nflip;
            sg |= static_cast<uint8_t>(1 << i);
          }
        }
        if (nflip % 2) {
          int imin = 0;
          float min = weight[8 * k + imin] * xb[8 * k + imin] * xb[8 * k + imin];
          for (int i = 1; i < 8; ++i) {
            const float ax = weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
            if (ax < min) {
              min = ax;
              imin = i;
            }
          }
          xval[8 * k + imin] = -xval[8 * k + imin];
          sg ^= static_cast<uint8_t>(1 << imin);
        }
        block_signs[k] = sg & 127;
      }
      const float max = max_of(xval);
      if (max < kGroupMaxEpsXxs) {
        // Grid index 0 and scale code 0 stay: ggml decodes such a group to
        // d/4 * 4 = d, not to zeros.
        scales[ib] = 0;
        continue;
      }
      float scale = search_group(s, kXxs, xval, weight, waux, max, L);
      if (scale < 0) {
        // Cannot happen (xval's fit is positive); ggml guards it anyway.
        scale = -scale;
        for (int k = 0; k < 4; ++k) block_signs[k] = static_cast<uint8_t>(~block_signs[k] & 127);
      }
      for (int k = 0; k < kQuads; ++k) b.qs[8 * ib + k] = static_cast<uint8_t>(grid_index_of(s, L, k));
      scales_and_signs[ib] = block_signs[0] | (block_signs[1] << 7) | (block_signs[2] << 14) | (block_signs[3] << 21);
      scales[ib] = scale;
      max_scale = max_scale > scale ? max_scale : scale;  // ggml's MAX
    }
    if (!max_scale) {
      std::memset(&b, 0, sizeof b);
      continue;
    }
    const float d = max_scale / 31;
    b.d = fp32_to_fp16(d * 1.0125f);  // ggml's fudge factor
    const float id = 1 / d;
    for (int ib = 0; ib < kGroups; ++ib) {
      scales_and_signs[ib] |= static_cast<uint32_t>(iq_scale_code(id, scales[ib], 15)) << 28;
      std::memcpy(b.qs + 64 + 4 * ib, &scales_and_signs[ib], 4);  // little-endian, as ggml's uint32 store
    }
  }
}

void quantize_row_iq3_s(const float* x, BlockIQ3_S* y, int64_t n_per_row, const float* qw) {
  const Iq3Search& s = search_s();
  float scales[kGroups], weight[kGroup], waux[kGroup], xval[kGroup];
  int8_t L[kGroup];
  for (int64_t ibl = 0; ibl < n_per_row / kSuper; ++ibl) {
    BlockIQ3_S& b = y[ibl];
    std::memset(&b, 0, sizeof b);
    const float* xbl = x + kSuper * ibl;
    const float sigma2 = super_block_sigma2(xbl);
    // ggml advances its qs and signs pointers only past groups it encodes:
    // after an all-zero group the later groups' indices and signs land one
    // slot early and the last slots stay zero (qh and scales are indexed by
    // group and do not shift). Reproduced, since it is in the files.
    int slot = 0;
    float max_scale = 0;
    for (int ib = 0; ib < kGroups; ++ib) {
      const float* xb = xbl + kGroup * ib;
      group_weights(xb, qw ? qw + kSuper * ibl + kGroup * ib : nullptr, sigma2, weight, waux);
      uint8_t block_signs[4];  // all 8 sign bits per 8 elements
      for (int k = 0; k < 4; ++k) {
        uint8_t sg = 0;
        for (int i = 0; i < 8; ++i) {
          if (xb[8 * k + i] >= 0) {
            xval[8 * k + i] = xb[8 * k + i];
          } else {
            xval[8 * k + i] = -xb[8 * k + i];
            sg |= static_cast<uint8_t>(1 << i);
          }
        }
        block_signs[k] = sg;
      }
      const float max = max_of(xval);
      if (!max) {
        scales[ib] = 0;
        continue;
      }
      float scale = search_group(s, kS, xval, weight, waux, max, L);
      if (scale < 0) {
        scale = -scale;
        for (int k = 0; k < 4; ++k) block_signs[k] = static_cast<uint8_t>(~block_signs[k]);
      }
      for (int k = 0; k < kQuads; ++k) {
        const int gi = grid_index_of(s, L, k);
        b.qs[kQuads * slot + k] = static_cast<uint8_t>(gi & 255);
        b.qh[ib] |= static_cast<uint8_t>((gi >> 8) << k);
      }
      std::memcpy(b.signs + 4 * slot, block_signs, 4);
      ++slot;
      scales[ib] = scale;
      max_scale = max_scale > scale ? max_scale : scale;  // ggml's MAX
    }
    if (!max_scale) continue;
    const float d = max_scale / 31;
    b.d = fp32_to_fp16(d * 1.033f);  // ggml's fudge factor
    const float id = 1 / d;
    for (int ib = 0; ib < kGroups; ib += 2) {
      const int lo = iq_scale_code(id, scales[ib], 15), hi = iq_scale_code(id, scales[ib + 1], 15);
      b.scales[ib / 2] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

}  // namespace moe::quant_detail
