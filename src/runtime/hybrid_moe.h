// The routed-expert step of a MoE layer across two backends (DESIGN.md, "The
// backend seam"): the compute backend (a GPU, or the CPU standing in for one)
// has routed the tokens; their (token, slot) pairs are sorted by expert and
// split by ExpertPlacement. The host's share (experts left in the file
// mapping) is gathered, handed to the host CPU backend on a worker thread,
// and computed straight from the mapping while the compute backend computes
// its own experts (and, between begin() and finish(), anything else the
// model queues, such as the shared experts). finish() puts the host's rows
// back in slot order, so the combination that follows adds them exactly as a
// single backend would.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/async_worker.h"
#include "runtime/backend.h"
#include "runtime/expert_stats.h"
#include "runtime/moe_dispatch.h"

namespace moe {

// One layer's routed experts as each side holds them.
struct LayerExperts {
  ExpertWeights host;              // the merged tensors in the mapping, all experts
  ExpertWeights device;            // the compute backend's compacted copy, or empty
  std::vector<int32_t> device_slot;  // expert -> matrix of `device`, -1: on the host
};

class HybridMoe {
 public:
  // host: the host backend when it is not the compute backend (null: the
  // compute backend is the host and computes every expert from `host`
  // weights). Buffers for n_batch tokens are allocated here.
  HybridMoe(Backend& compute, Backend* host, int64_t n_layers, int64_t n_experts, int64_t top_k, int64_t hidden,
            int64_t n_batch);

  // Starts the routed experts of n tokens of layer il: slot_out row
  // t * top_k + k = FFN_{ids[t][k]}(h[t]) once finish() returns.
  void begin(int64_t il, const LayerExperts& L, const Act& h, const Ids& ids, int64_t n, Act slot_out);
  void finish(Act slot_out);

  // How often each expert was chosen: [layer][expert].
  const std::vector<uint64_t>& counts() const { return counts_; }
  // Those counts as a statistics file holds them: the first n_layers (a
  // model's trunk; an MTP module's block comes after it), over `tokens`,
  // with the model's top_k (0 for a model with no routed experts).
  ExpertStats stats(const std::string& model, int64_t n_layers, int64_t top_k, uint64_t tokens) const;

 private:
  Backend& compute_;
  Backend* host_;
  int64_t n_experts_, top_k_, hidden_;
  std::vector<int32_t> ids_;  // the routing, read back to the host
  std::vector<uint64_t> counts_;
  ExpertDispatch all_;
  std::vector<int64_t> sort_scratch_;
  DispatchSplit split_;
  Act h_host_, out_host_;     // the host's share: gathered rows, its outputs
  std::unique_ptr<AsyncWorker> worker_;
  bool host_pending_ = false;
};

}  // namespace moe
