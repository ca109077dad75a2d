// A Hugging Face DeepSeek-V2/V3 config.json, parsed into a struct that keeps
// the Hugging Face names (the converter's input vocabulary). Optional keys
// carry the defaults llama.cpp's convert_hf_to_gguf.py applies when a key is
// absent; keys it would write only when present stay std::optional.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace moe {

struct HfRopeScaling {
  std::string type;  // "yarn", "linear", ... (rope_scaling.type or .rope_type)
  std::optional<double> factor;
  std::optional<int64_t> original_max_position_embeddings;
  std::optional<double> beta_fast, beta_slow;
  std::optional<double> extrapolation_factor;  // -> yarn_ext_factor
  std::optional<double> attention_factor;      // attention_factor or attn_factor
  std::optional<double> mscale_all_dim;        // -> yarn_log_multiplier (x 0.1)
};

struct HfConfig {
  std::string path;          // config.json, for errors
  std::string architecture;  // architectures[0]
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t moe_intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
  int64_t n_shared_experts = 0;
  std::optional<int64_t> n_routed_experts;
  std::optional<int64_t> num_experts_per_tok;
  std::optional<double> routed_scaling_factor;
  int64_t kv_lora_rank = 512;
  std::optional<int64_t> q_lora_rank;  // null/absent: no low-rank q (V2-Lite)
  int64_t qk_rope_head_dim = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t v_head_dim = 0;
  std::optional<int64_t> head_dim;  // rarely present; written before being overridden
  std::optional<int64_t> n_group, topk_group;
  std::optional<std::string> topk_method;
  int64_t first_k_dense_replace = 0;
  bool norm_topk_prob = false;
  std::optional<std::string> scoring_func;
  std::optional<int64_t> max_position_embeddings;
  double rms_norm_eps = 1e-6;
  std::optional<double> rope_theta;
  bool tie_word_embeddings = false;
  std::optional<int64_t> bos_token_id, eos_token_id, pad_token_id, unk_token_id;
  int64_t num_nextn_predict_layers = 0;
  // DeepSeek-V3.2 (DeepseekV32ForCausalLM): the lightning indexer.
  std::optional<int64_t> index_n_heads, index_head_dim, index_topk;
  std::optional<HfRopeScaling> rope_scaling;
  // quantization_config (DeepSeek's FP8 release: quant_method "fp8").
  std::optional<std::string> quant_method;
  int64_t fp8_block_rows = 128, fp8_block_cols = 128;
};

// Reads and validates `dir`/config.json. Throws moe::Error naming the file
// and the key (missing, wrong type, out of range, unsupported architecture).
HfConfig load_hf_config(const std::string& dir);
// The same from JSON text; `path` is used in errors.
HfConfig parse_hf_config(const std::string& json_text, const std::string& path);

}  // namespace moe
