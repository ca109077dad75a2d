// DeepSeek-V2/V3 weights bound by name from a GGUF file, shapes checked at
// load. Tensors stay in their stored type in the mapping; only tiny tensors
// (norm vectors not stored as f32, and the split of a legacy attn_kv_b) are
// converted into memory we own. Shapes use ggml order: [in, out(, heads/experts)].
#pragma once

#include <memory>
#include <optional>
#include <variant>
#include <vector>

#include "core/tensor.h"
#include "model/deepseek2_config.h"

namespace moe {

class GgufFile;

// q = W_q x  (V2-Lite)  or  q = W_q_b · RMSNorm(W_q_a x)  (q_lora_rank > 0)
struct QProjPlain {
  TensorView wq;  // [hidden, heads * qk_head_dim]
};
struct QProjLora {
  TensorView wq_a;         // [hidden, q_lora_rank]
  const float* q_a_norm;   // [q_lora_rank]
  TensorView wq_b;         // [q_lora_rank, heads * qk_head_dim]
};

struct MlaWeights {
  std::variant<QProjPlain, QProjLora> q_proj;
  TensorView wkv_a;          // [hidden, kv_lora_rank + qk_rope_head_dim]: c_kv and k_rope
  const float* kv_a_norm;    // [kv_lora_rank]
  TensorView wk_b;           // [qk_nope_head_dim, kv_lora_rank, heads]: absorbs into q
  TensorView wv_b;           // [kv_lora_rank, v_head_dim, heads]: latent -> value
  TensorView wo;             // [heads * v_head_dim, hidden]
};

struct FfnWeights {          // W_down(silu(W_gate x) * W_up x)
  TensorView gate;           // [hidden, ffn]
  TensorView up;             // [hidden, ffn]
  TensorView down;           // [ffn, hidden]
};

struct MoeWeights {
  TensorView router;         // [hidden, n_routed_experts]
  const float* score_bias;   // [n_routed_experts] exp_probs_b (e_score_correction_bias), or null
  TensorView gate_exps;      // [hidden, moe_ffn, n_routed_experts]
  TensorView up_exps;        // [hidden, moe_ffn, n_routed_experts]
  TensorView down_exps;      // [moe_ffn, hidden, n_routed_experts]
  std::optional<FfnWeights> shared;  // [hidden, moe_ffn * n_shared_experts], ...
};

struct LayerWeights {
  const float* attn_norm;    // [hidden]
  MlaWeights mla;
  const float* ffn_norm;     // [hidden]
  std::variant<FfnWeights, MoeWeights> ffn;  // dense for il < first_k_dense_replace
};

struct Deepseek2Weights {
  TensorView token_embd;     // [hidden, vocab]
  const float* output_norm;  // [hidden]
  TensorView output;         // [hidden, vocab]; token_embd when tied
  std::vector<LayerWeights> layers;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> owned;  // converted small tensors

  // Binds every tensor the forward pass uses; throws naming the tensor,
  // expected and found shape/type. Unsupported types are refused here.
  static Deepseek2Weights bind(const GgufFile& f, const Deepseek2Config& c);
};

}  // namespace moe
