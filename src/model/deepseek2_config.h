// DeepSeek-V2/V3 hyper-parameters, under the names of the Hugging Face
// config.json (DeepseekV3Config), read from a deepseek2 GGUF file. This is
// the one place where GGUF key names map to those names.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/backend.h"  // ScoringFunc

namespace moe {

class GgufFile;

enum class RopeScaling { kNone, kYarn };

struct Deepseek2Config {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;             // n_embd
  int64_t num_hidden_layers = 0;       // trunk layers (MTP layers excluded)
  int64_t num_nextn_predict_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t q_lora_rank = 0;             // 0: q = W_q x directly (V2-Lite)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t intermediate_size = 0;       // dense FFN of the leading layers
  int64_t moe_intermediate_size = 0;   // each routed / shared expert
  int64_t n_routed_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_shared_experts = 0;
  int64_t first_k_dense_replace = 0;
  int64_t n_group = 1;                 // expert groups (1: no group-limited routing)
  int64_t topk_group = 1;
  float routed_scaling_factor = 1.0f;
  bool norm_topk_prob = false;
  ScoringFunc scoring_func = ScoringFunc::kSoftmax;
  float rms_norm_eps = 1e-6f;
  int64_t max_position_embeddings = 0;  // context_length

  // RoPE, applied to the qk_rope_head_dim part of q and k.
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling = RopeScaling::kNone;
  float rope_factor = 1.0f;
  int64_t original_max_position_embeddings = 0;
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
  float mscale_all_dim = 0.0f;  // from rope.scaling.yarn_log_multiplier (= 0.1 * mscale_all_dim)
  float rope_attn_factor = 1.0f;
  // DeepSeek-V3.2's lightning indexer (arch deepseek32; 0 heads: none):
  // index_topk cached positions per query, chosen by index_n_heads heads of
  // index_head_dim (rotary part first, then a Hadamard rotation).
  int64_t index_n_heads = 0;
  int64_t index_head_dim = 0;
  int64_t index_topk = 0;
  std::string architecture = "deepseek2";  // or "deepseek32"
  bool has_indexer() const { return index_n_heads > 0; }

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool is_moe_layer(int64_t il) const { return il >= first_k_dense_replace; }

  // Scale of the cos/sin of RoPE and of the attention logits, as llama.cpp
  // computes them for deepseek2 with YaRN (see rope_yarn_scales in the .cpp).
  float rope_mscale() const;
  float softmax_scale() const;

  // Reads and validates; throws GgufError/moe::Error naming the key at fault.
  static Deepseek2Config from_gguf(const GgufFile& f);
  std::string describe() const;
};

}  // namespace moe
