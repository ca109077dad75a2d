// The routed experts of one MoE layer over a batch, run as one grouped
// product (DeepSeekMoE's FFN_i(u) = W_down,i (silu(W_gate,i u) * W_up,i u)).
//
// The dispatch (src/runtime/moe_dispatch.h) has the (token, slot) pairs
// sorted by expert, so each expert's weights are read once per batch. Every
// (expert, matrix, block of rows) is then a job, and threads take jobs from a
// shared counter: in generation (one token, top-k experts) all threads share
// the k experts' rows with two synchronisations per layer instead of three
// per expert, and in prompts experts with very different token counts still
// keep every thread busy. An expert that kGemmMinTokens or more tokens
// chose runs through the repacked GEMM (gemm_q8.h), as matmul does for as
// many tokens; the others through the per-row kernels.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "cpu/gemm_q8.h"
#include "cpu/matmul.h"
#include "runtime/backend.h"

namespace moe {

class ThreadPool;

class GroupedExperts {
 public:
  // w.gate, w.up: [hidden, ffn, n]; w.down: [ffn, hidden, n]; h rows of
  // `hidden` floats h_stride apart; out rows of `hidden` floats out_stride
  // apart: out[out_row[p]] = FFN_{group expert}(h[in_row[p]]).
  // allow_gemm = false: per-row kernels however many tokens an expert has
  // (matmul.h: batch-invariant).
  void run(const ExpertWeights& w, const float* h, int64_t h_stride, const ExpertDispatch& d, float* out,
           int64_t out_stride, ThreadPool& pool, bool allow_gemm = true);

  // The whole layer from per-(token, slot) expert ids [n][top_k], written to
  // out [n * top_k][hidden]: the dispatch sorted here (tests, benchmarks).
  void run(const TensorView& gate, const TensorView& up, const TensorView& down, const float* h, int64_t n,
           const int32_t* ids, int64_t top_k, float* out, ThreadPool& pool);

 private:
  // Buffers grow to the largest batch once; later calls allocate nothing.
  ExpertDispatch dispatch_;
  std::vector<int64_t> sort_scratch_;
  std::vector<ActLayout> gate_layout_, up_layout_, down_layout_;  // per group
  std::vector<int32_t> pos_group_;                                 // [sorted position] -> group
  std::vector<uint8_t> act_gate_, act_up_, act_down_;  // quantized activation rows, sorted order
  std::vector<GemmTile> tiles_;  // repacking buffers, one per thread
  std::vector<float> g_, u_, y_;     // [sorted][ffn], [sorted][ffn], [sorted][hidden]
};

}  // namespace moe
