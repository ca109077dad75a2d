// The routed experts of one MoE layer over a batch, run as one grouped
// product (DeepSeekMoE's FFN_i(u) = W_down,i (silu(W_gate,i u) * W_up,i u)).
//
// Tokens are sorted by expert so each expert's weights are read once per
// batch. Every (expert, matrix, block of rows) is then a job, and threads take
// jobs from a shared counter: in generation (one token, top-k experts) all
// threads share the k experts' rows with two synchronisations per layer
// instead of three per expert, and in prompts experts with very different
// token counts still keep every thread busy. The arithmetic per (row, token)
// is exactly matmul's, so results do not depend on the grouping.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace moe {

class ThreadPool;

class GroupedExperts {
 public:
  // gate, up: [hidden, ffn, n_experts]; down: [ffn, hidden, n_experts].
  // h: [n][hidden]; ids: [n][top_k], the expert of each (token, slot).
  // out: [n * top_k][hidden], row t * top_k + k = expert ids[t][k] applied to h[t].
  void run(const TensorView& gate, const TensorView& up, const TensorView& down, const float* h, int64_t n,
           const int32_t* ids, int64_t top_k, float* out, ThreadPool& pool);

 private:
  struct Group {
    int32_t expert;
    int64_t first;  // position in the expert-sorted order
    int64_t count;
  };
  // Buffers grow to the largest batch once; later calls allocate nothing.
  std::vector<int64_t> start_, fill_;  // counting sort: first position of each expert
  std::vector<int64_t> order_;       // slot (t * top_k + k) at each sorted position
  std::vector<Group> groups_;
  std::vector<uint8_t> act_gate_, act_up_, act_down_;  // quantized activation rows, sorted order
  std::vector<float> g_, u_, y_;     // [sorted][ffn], [sorted][ffn], [sorted][hidden]
};

}  // namespace moe
