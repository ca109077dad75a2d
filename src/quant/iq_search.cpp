// iq2xs_init_impl's tables, rebuilt from the grids in iq_grids(). See
// iq_search.h for what they hold.
//
// ggml computes a neighbour list for every one of the 43692 map entries off
// the grid, including code vectors with an element 3, which the quantizers
// never form (they clamp codes to 0..2); only the 3^8 reachable vectors get
// a list here. ggml qsorts each vector's (distance, index) pairs with a total
// order, so its lists are simply "by distance, then by index": the same
// lists come from bucketing the points by their (small, integer) distance.

#include "quant/iq_search.h"

#include <cstddef>

#include "quant/iq_grids.h"

namespace moe::quant_detail {

namespace {

// Largest squared distance between code vectors stored as 1, 3, 5: 8 * 4^2.
constexpr int kMaxDist2 = 128;

// The 2-bit codes of a grid from its decoded bytes (values[l] is what code l
// decodes to).
template <size_t N>
std::vector<std::array<int8_t, 8>> grid_points(const std::array<uint64_t, N>& grid, const uint8_t (&values)[3]) {
  std::vector<std::array<int8_t, 8>> points(N);
  for (size_t i = 0; i < N; ++i) {
    for (int k = 0; k < 8; ++k) {
      const auto byte = static_cast<uint8_t>(grid[i] >> (8 * k));
      int l = 0;
      while (values[l] != byte) ++l;  // every byte is one of the three values
      points[i][k] = static_cast<int8_t>(2 * l + 1);
    }
  }
  return points;
}

IqSearch build(std::vector<std::array<int8_t, 8>> points, int nwant) {
  IqSearch s;
  s.points = std::move(points);
  const int n = static_cast<int>(s.points.size());
  s.map.assign(IqSearch::kMapSize, -1);
  for (int i = 0; i < n; ++i) {
    int8_t codes[8];
    for (int k = 0; k < 8; ++k) codes[k] = static_cast<int8_t>(s.code(i, k));
    s.map[iq_code_vector(codes)] = i;
  }

  std::vector<int> dist2(static_cast<size_t>(n));
  for (int u = 0; u < IqSearch::kMapSize; ++u) {
    if (s.map[u] >= 0) continue;
    int8_t pos[8];
    bool reachable = true;
    for (int k = 0; k < 8; ++k) {
      const int l = (u >> 2 * k) & 3;
      reachable = reachable && l < 3;
      pos[k] = static_cast<int8_t>(2 * l + 1);
    }
    if (!reachable) continue;
    int count[kMaxDist2 + 1] = {};
    for (int j = 0; j < n; ++j) {
      int d2 = 0;
      for (int k = 0; k < 8; ++k) d2 += (s.points[j][k] - pos[k]) * (s.points[j][k] - pos[k]);
      dist2[j] = d2;
      ++count[d2];
    }
    s.map[u] = -1 - static_cast<int32_t>(s.neighbours.size());
    const size_t head = s.neighbours.size();
    s.neighbours.push_back(0);
    int have = 0;
    for (int d = 0; d <= kMaxDist2 && have < nwant; ++d) {
      if (!count[d]) continue;
      ++have;
      for (int j = 0; j < n; ++j)
        if (dist2[j] == d) s.neighbours.push_back(static_cast<uint16_t>(j));
    }
    s.neighbours[head] = static_cast<uint16_t>(s.neighbours.size() - head - 1);
  }
  return s;
}

constexpr uint8_t kIq2Values[3] = {8, 25, 43};
constexpr uint8_t kIq1Values[3] = {0xff, 0x00, 0x01};  // int8 -1, 0, +1

}  // namespace

const IqSearch& iq_search(IqGrid grid) {
  // How many distinct distances each grid's lists span: ggml's nwant (1 for
  // the densest IQ2 grid, 3 for the sparse IQ1 grid).
  switch (grid) {
    case IqGrid::k256: {
      static const IqSearch s = build(grid_points(iq_grids().iq2xxs, kIq2Values), 2);
      return s;
    }
    case IqGrid::k512: {
      static const IqSearch s = build(grid_points(iq_grids().iq2xs, kIq2Values), 2);
      return s;
    }
    case IqGrid::k1024: {
      static const IqSearch s = build(grid_points(iq_grids().iq2s, kIq2Values), 1);
      return s;
    }
    case IqGrid::k2048:
      break;
  }
  static const IqSearch s = build(grid_points(iq_grids().iq1s, kIq1Values), 3);
  return s;
}

}  // namespace moe::quant_detail
