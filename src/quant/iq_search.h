// The search structure behind ggml's IQ2 and IQ1 quantizers (ggml-quants.c's
// iq2xs_init_impl, llama.cpp 3.22.1): for one of the four 8-element grids,
// the grid points, a map from any 8-element code vector to its grid index,
// and for every code vector that is not a grid point the list of grid points
// nearest to it. The quantizers round 8 values to codes 0..2 per element,
// look the vector up, and when it is off the grid pick the best of its
// neighbours by weighted error; which points are neighbours (and in which
// order they are tried, which decides ties) is part of the output, so this
// reproduces ggml's lists exactly.
//
// Codes: element k of a code vector u is l_k = (u >> 2k) & 3 in 0..2, and the
// grid stores it as 2 l + 1 (1, 3, 5), as ggml's kgrid_q2xs does. The codes
// are read from iq_grids() (the grids the dequantizers use), not kept twice.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "quant/quantize_util.h"

namespace moe::quant_detail {

// The grids by size: 256 IQ2_XXS, 512 IQ2_XS, 1024 IQ2_S, 2048 IQ1_S/IQ1_M.
enum class IqGrid { k256, k512, k1024, k2048 };

struct IqSearch {
  // Code vectors span 8 x 2 bits, but no element is ever 3: the largest is
  // 0xaaaa. ggml's map has 43692 entries.
  static constexpr int kMapSize = 43692;

  std::vector<std::array<int8_t, 8>> points;  // per element 2 l + 1
  // For a code vector u: its grid index when u is a grid point, otherwise
  // -1 - (offset of u's neighbour list in `neighbours`).
  std::vector<int32_t> map;
  // Lists of {count, index, index, ...}: the grid points at the `nwant`
  // smallest squared distances from u (all points at each of those
  // distances), by distance, then by index.
  std::vector<uint16_t> neighbours;

  int grid_index(uint16_t u) const { return map[u]; }
  // Only for u off the grid (grid_index(u) < 0).
  const uint16_t* neighbours_of(uint16_t u) const { return neighbours.data() + (-map[u] - 1); }
  // Grid point i's code for element k (0..2).
  int code(int i, int k) const { return (points[static_cast<size_t>(i)][k] - 1) / 2; }
};

// Built at first use, immutable afterwards.
const IqSearch& iq_search(IqGrid grid);

// The 8 codes of L as a code vector.
inline uint16_t iq_code_vector(const int8_t* L) {
  uint16_t u = 0;
  for (int i = 0; i < 8; ++i) u = static_cast<uint16_t>(u | (L[i] << 2 * i));
  return u;
}

// A group scale as a code in [0, max_code] against the super-block's inverse
// scale id; codes stand for 2 l + 1 steps of d (ggml's
// nearest_int(0.5f*(id*scale-1)), clamped).
inline int iq_scale_code(float id, float scale, int max_code) {
  const int l = nearest_int(0.5f * (id * scale - 1));
  return l < 0 ? 0 : l > max_code ? max_code : l;
}

}  // namespace moe::quant_detail
