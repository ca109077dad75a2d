// The DeepSeek-V2/V3 model (GGUF architecture "deepseek2") on the CPU:
// loading, and the forward pass over a batch of tokens through the MLA
// latent cache.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/moe_experts.h"
#include "gguf/gguf_reader.h"
#include "model/deepseek2_config.h"
#include "model/deepseek2_weights.h"
#include "runtime/kv_cache.h"

namespace moe {

class Deepseek2Model {
 public:
  // Maps the file, reads the hyper-parameters, binds and checks every tensor.
  static std::unique_ptr<Deepseek2Model> load(const std::string& path);

  const GgufFile& file() const { return file_; }
  const Deepseek2Config& config() const { return config_; }
  const Deepseek2Weights& weights() const { return weights_; }
  // RoPE frequency of each rotated pair (YaRN-corrected when the file says so).
  const std::vector<float>& rope_freqs() const { return rope_freqs_; }

 private:
  Deepseek2Model(GgufFile f) : file_(std::move(f)) {}
  GgufFile file_;
  Deepseek2Config config_;
  Deepseek2Weights weights_;
  std::vector<float> rope_freqs_;
};

// Per-sequence state: the latent cache and every scratch buffer, all
// allocated up front; forward() allocates nothing.
class Deepseek2Session {
 public:
  // n_ctx: cache positions; n_batch: most tokens per forward() call.
  Deepseek2Session(const Deepseek2Model& model, int64_t n_ctx, int64_t n_batch, int n_threads);

  // Evaluates tokens at positions n_past() .. n_past()+n-1, appending them to
  // the cache. Writes logits for every token ([n][vocab]) when all_logits,
  // else for the last one only ([vocab]). n may exceed n_batch (split).
  void forward(const int32_t* tokens, int64_t n, float* logits, bool all_logits);

  int64_t n_past() const { return n_past_; }
  int64_t n_ctx() const { return cache_.n_ctx(); }
  void reset() { n_past_ = 0; }
  void truncate(int64_t n) { if (n >= 0 && n < n_past_) n_past_ = n; }  // forget positions n..
  const Deepseek2Model& model() const { return model_; }
  // How often each routed expert was chosen since the session began:
  // [layer][expert] (dense layers stay zero). For placement statistics.
  const std::vector<uint64_t>& expert_counts() const { return expert_counts_; }

 private:
  void forward_batch(const int32_t* tokens, int64_t n, float* logits, bool all_logits);
  void mla_attention(int64_t il, const MlaWeights& m, int64_t n);
  void ffn_dense(const FfnWeights& f, const float* x, int64_t n, float* out);
  void moe_ffn(int64_t il, const MoeWeights& e, int64_t n);
  void mm(const TensorView& W, const float* x, int64_t n, float* y);

  const Deepseek2Model& model_;
  const Deepseek2Config& c_;
  MlaKvCache cache_;
  int64_t n_batch_;
  int64_t n_past_ = 0;
  ThreadPool pool_;

  // Scratch, [n_batch][...] each.
  std::vector<float> x_;        // residual stream [hidden]
  std::vector<float> h_;        // normed input of a block [hidden]
  std::vector<float> out_;      // block output [hidden]
  std::vector<float> q_a_;      // [q_lora_rank]
  std::vector<float> q_;        // [heads * qk_head_dim]
  std::vector<float> kv_a_;     // [kv_lora_rank + qk_rope_head_dim]
  // Per-thread buffers of the per-head projections: [threads][n_batch][head_dim_max_].
  int64_t head_dim_max_ = 0;    // max(qk_nope, kv_lora, v_head)
  std::vector<float> head_in_;
  std::vector<float> head_out_;
  std::vector<uint8_t> head_scratch_;  // [threads][quantized activations]
  float* head_buffer(std::vector<float>& b, int thread) {
    return b.data() + static_cast<size_t>(thread) * static_cast<size_t>(n_batch_ * head_dim_max_);
  }
  uint8_t* head_scratch(int thread) {
    return head_scratch_.data() + static_cast<size_t>(thread) * static_cast<size_t>(n_batch_ * head_dim_max_ * 4 + 4096);
  }
  std::vector<float> q_abs_;    // [heads][kv_lora_rank + qk_rope_head_dim], absorbed q | rotated q_rope
  std::vector<float> o_lat_;    // [heads][kv_lora_rank]
  std::vector<float> attn_v_;   // [heads * v_head_dim]
  static constexpr int64_t kAttnHeadGroup = 8;  // heads attending together (cpu/attention.h)
  std::vector<float> scores_;   // [threads][kAttnHeadGroup][n_ctx]
  std::vector<float> ffn_g_, ffn_u_;  // [max ffn]
  std::vector<float> router_;   // [n_experts]
  std::vector<int32_t> route_ids_;    // [top_k]
  std::vector<float> route_w_;        // [top_k]
  std::vector<float> route_scratch_;  // [2 * n_experts]
  std::vector<uint64_t> expert_counts_;  // [layers][n_experts]
  std::vector<float> slot_out_;        // [n_batch][top_k][hidden] routed expert outputs
  GroupedExperts experts_;
  std::vector<float> ye_;            // shared experts' output
  std::vector<uint8_t> mm_scratch_;
};

}  // namespace moe
