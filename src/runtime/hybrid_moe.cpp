#include "runtime/hybrid_moe.h"

#include "core/error.h"

namespace moe {

HybridMoe::HybridMoe(Backend& compute, Backend* host, int64_t n_layers, int64_t n_experts, int64_t top_k,
                     int64_t hidden, int64_t n_batch)
    : compute_(compute), host_(host), n_experts_(n_experts), top_k_(top_k), hidden_(hidden) {
  ids_.resize(static_cast<size_t>(n_batch * top_k));
  counts_.assign(static_cast<size_t>(n_layers * n_experts), 0);
  if (host_) {
    h_host_ = host_->alloc(n_batch, hidden);
    out_host_ = host_->alloc(n_batch * top_k, hidden);
    worker_ = std::make_unique<AsyncWorker>();
  }
}

ExpertStats HybridMoe::stats(const std::string& model, int64_t n_layers, int64_t top_k, uint64_t tokens) const {
  ExpertStats s;
  s.model = model;
  s.n_layers = n_layers;
  s.n_experts = n_experts_;
  s.top_k = top_k;
  s.tokens = tokens;
  s.counts.assign(counts_.begin(), counts_.begin() + n_layers * n_experts_);
  return s;
}

void HybridMoe::begin(int64_t il, const LayerExperts& L, const Act& h, const Ids& ids, int64_t n, Act slot_out) {
  if (host_pending_) {  // a step that failed between begin() and finish(): its error was reported then
    host_pending_ = false;
    try {
      worker_->wait();
    } catch (...) {
    }
  }
  // The routing decides everything below: read it back (k ints per token).
  compute_.copy_to_host(ids_.data(), ids.data, static_cast<size_t>(n * top_k_) * sizeof(int32_t));
  uint64_t* counts = &counts_[static_cast<size_t>(il * n_experts_)];
  for (int64_t i = 0; i < n * top_k_; ++i) ++counts[ids_[static_cast<size_t>(i)]];
  moe_dispatch_sort(ids_.data(), n, top_k_, n_experts_, all_, sort_scratch_);

  if (!host_) {  // one backend: every expert where it is
    compute_.grouped_experts(L.host, h, all_, slot_out);
    return;
  }
  moe_dispatch_split(all_, L.device_slot, n, split_);
  if (!split_.host.empty()) {
    // The host's tokens leave the device first; then the CPU works on them
    // while the device computes its own experts.
    const int64_t n_rows = static_cast<int64_t>(split_.host_tokens.size());
    compute_.gather_rows_to_host(h, split_.host_tokens.data(), n_rows, h_host_.data);
    worker_->submit([this, &L] { host_->grouped_experts(L.host, h_host_, split_.host, out_host_); });
    host_pending_ = true;
  }
  if (!split_.device.empty()) compute_.grouped_experts(L.device, h, split_.device, slot_out);
}

void HybridMoe::finish(Act slot_out) {
  if (!host_pending_) return;
  host_pending_ = false;
  worker_->wait();
  compute_.scatter_rows_from_host(out_host_.data, split_.host_slots.data(),
                                  static_cast<int64_t>(split_.host_slots.size()), slot_out);
}

}  // namespace moe
