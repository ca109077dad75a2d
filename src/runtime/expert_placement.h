// Which weights live on which backend. The device (a GPU, or a CPU standing
// in for one) computes everything every token uses: embeddings, attention,
// norms, the router, dense layers, shared experts, the output head, and holds
// the latent KV cache. Routed experts then go to the device in order of how
// often they are chosen (recorded routing statistics; without them, layer by
// layer) until its memory budget is spent. The rest stay in the file mapping
// and the host CPU computes them for the tokens routed to them.
//
// The flags are llama.cpp's: --cpu-moe (every routed expert on the host),
// --n-cpu-moe N (those of layers 0..N-1), -ngl N (the last N layers on the
// device: here their routed experts, since the device computes every
// layer's attention anyway; 0 = the CPU alone), -ot REGEX=BACKEND (tensors whose
// name matches; routed expert tensors only may go to the CPU here, since the
// device computes everything else), plus --gpu-mem SIZE for the budget.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace moe {

struct ExpertStats;

// A weight tensor as the planner sees it.
enum class TensorRole { kEveryToken, kRoutedExperts };
struct TensorFootprint {
  std::string name;
  int64_t layer = -1;  // -1: not in a layer
  TensorRole role = TensorRole::kEveryToken;
  size_t bytes = 0;
  int64_t n_experts = 0;  // routed experts: matrices in the merged tensor
};

struct PlacementOptions {
  bool cpu_moe = false;                // --cpu-moe
  int64_t n_cpu_moe = 0;               // --n-cpu-moe N
  int64_t n_gpu_layers = -1;           // -ngl N: 0 = the CPU alone; N < layers = the routed experts of
                                       // the first layers - N layers on the CPU; -1 or >= layers: no limit
  std::vector<std::string> overrides;  // -ot, each "REGEX=BACKEND[,REGEX=BACKEND...]"
  std::string expert_stats_file;       // --expert-stats
};

struct PlacementInputs {
  std::string host_name = "CPU";
  std::string host_memory = "the file mapping";  // where the host reads its weights
  std::string device_name;    // empty: no device backend
  int64_t budget = -1;        // device bytes the plan may use; -1: no limit
  size_t kv_bytes = 0;        // the latent cache, on the device when there is one
  PlacementOptions options;
  const ExpertStats* stats = nullptr;  // routing counts, or null for uniform
};

struct ExpertPlacement {
  struct Usage {
    size_t every_token = 0;  // attention, dense, shared, router, embeddings, head
    size_t experts = 0;      // routed experts
    size_t kv = 0;           // latent cache
    int64_t n_experts = 0;
    size_t total() const { return every_token + experts + kv; }
  };
  std::string host_name, device_name, host_memory = "the file mapping";
  bool device_active = false;  // false: the host backend computes everything
  int64_t budget = -1;
  Usage device, host;
  int64_t total_experts = 0;
  bool from_stats = false;
  std::string note;  // why the device is not used, when there is one and it is not
  // [layer][expert]: the expert's matrix in the device's compacted expert
  // tensors, -1 when it stays on the host. Empty rows for dense layers.
  std::vector<std::vector<int32_t>> device_slot;

  bool on_device(int64_t layer, int64_t expert) const {
    return device_active && device_slot[static_cast<size_t>(layer)][static_cast<size_t>(expert)] >= 0;
  }
  // The experts of a layer on the device, in matrix order.
  std::vector<int32_t> device_experts(int64_t layer) const;
  int64_t n_host_experts(int64_t layer) const;

  std::string describe() const;  // lines for the terminal, each starting "placement:"
  nlohmann::json to_json() const;
};

// Throws naming the flag at fault (a bad -ot, a forced expert that does not fit).
ExpertPlacement plan_expert_placement(const std::vector<TensorFootprint>& tensors, int64_t n_layers,
                                      const PlacementInputs& in);

// "8G", "512M", "1.5GiB", "300000000": bytes. Throws naming the text.
int64_t parse_byte_size(const std::string& text);
std::string format_bytes(double bytes);  // "1.25 GiB", "300.0 MiB", "512 B"

}  // namespace moe
