// Routing statistics: how often each routed expert of each layer was chosen.
// A run records them (`--record-expert-stats FILE`), a later run plans expert
// placement from them (`--expert-stats FILE`): the most used experts go to
// the device first.
//
// The file is JSON:
//   {"format": "moe.cpp expert stats", "version": 1,
//    "model": "<general.name of the model>", "n_layers": L, "n_experts": E,
//    "top_k": K, "tokens": T,
//    "counts": [[c_0_0, ..., c_0_E-1], ..., [c_L-1_0, ...]]}
// counts[l][e] is the number of tokens layer l routed to expert e (dense
// layers are rows of zeros); T is the number of tokens evaluated, so each
// MoE layer's row sums to T * K.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct ExpertStats {
  std::string model;
  int64_t n_layers = 0;
  int64_t n_experts = 0;
  int64_t top_k = 0;
  uint64_t tokens = 0;
  std::vector<uint64_t> counts;  // [n_layers][n_experts]

  uint64_t at(int64_t layer, int64_t expert) const {
    return counts[static_cast<size_t>(layer * n_experts + expert)];
  }

  // Throws naming the file and the field at fault.
  static ExpertStats read(const std::string& path);
  std::string to_json() const;
  void write(const std::string& path) const;  // atomically (temporary file + rename)
};

}  // namespace moe
