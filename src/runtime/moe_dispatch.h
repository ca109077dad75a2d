// MoE dispatch: the (token, slot) pairs of a batch sorted by expert, and the
// split of the sorted groups between the device and the host when some
// experts stay in the host's memory (ExpertPlacement). Host code on small
// integer arrays; the backends then compute each group as one product.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/backend.h"

namespace moe {

// Sorts slots s = t * top_k + k by expert ids[s] (stable: token order within
// an expert). Position p reads row s / top_k and writes row s. Groups name
// the global expert index. Buffers in `d` and `start` (n_experts + 1) are
// reused across calls, so a warm dispatch allocates nothing.
void moe_dispatch_sort(const int32_t* ids, int64_t n_tokens, int64_t top_k, int64_t n_experts, ExpertDispatch& d,
                       std::vector<int64_t>& start);

// The groups of `all` split by where their expert lives: device_slot[e] is
// expert e's matrix in the device's compacted expert tensors, or -1 when it
// stays on the host.
struct DispatchSplit {
  ExpertDispatch device;  // rows as in `all`; group experts are device matrices
  ExpertDispatch host;    // reads compact rows host_tokens[i], writes compact rows 0..n-1
  std::vector<int32_t> host_tokens;  // token rows to gather for the host, in first-use order
  std::vector<int32_t> host_slots;   // slot row of each host output row
  std::vector<int32_t> compact_;     // scratch: token -> compact row, -1
};
void moe_dispatch_split(const ExpertDispatch& all, const std::vector<int32_t>& device_slot, int64_t n_tokens,
                        DispatchSplit& out);

}  // namespace moe
