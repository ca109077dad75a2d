// DeepSeek-V4 (DeepseekV4ForCausalLM) in llama.cpp's deepseek4 GGUF layout:
// the release's config.json parsed, the metadata keys llama.cpp's converter
// writes from it (conversion/deepseek.py), and the tensors its loader
// expects (models/deepseek4.cpp) with their ggml shapes. Shared by moe-synth
// (random contents) and moe-convert (a checkpoint's contents).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "convert/deepseek2_gguf_layout.h"  // GgufKvList
#include "convert/tensor_layout.h"

namespace moe {

struct Deepseek4HfConfig {
  std::string path;  // config.json, for errors
  int64_t num_hidden_layers = 0, num_nextn_predict_layers = 0;
  int64_t hidden_size = 0, num_attention_heads = 0, head_dim = 0, qk_rope_head_dim = 0, q_lora_rank = 0;
  int64_t o_groups = 0, o_lora_rank = 0, sliding_window = 0, hc_mult = 0, hc_sinkhorn_iters = 20;
  int64_t n_routed_experts = 0, num_experts_per_tok = 0, moe_intermediate_size = 0, n_shared_experts = 0;
  int64_t index_n_heads = 0, index_head_dim = 0, index_topk = 0, num_hash_layers = 0;
  int64_t max_position_embeddings = 1048576;
  std::optional<int64_t> vocab_size;
  std::optional<int64_t> bos_token_id, eos_token_id, pad_token_id;
  float rms_norm_eps = 1e-6f, rope_theta = 10000.0f, compress_rope_theta = 160000.0f, hc_eps = 1e-6f;
  float routed_scaling_factor = 1.0f, swiglu_limit = 0.0f;
  bool norm_topk_prob = true;
  std::vector<int64_t> compress_ratios;  // [num_hidden_layers]: 0, 4 or 128
  // The MTP layer's: compress_ratios[num_hidden_layers] of the release's
  // config (which lists one more entry than layers), else 0.
  int64_t mtp_compress_ratio = 0;
  // rope_scaling (the release: YaRN); type "" when absent.
  std::string rope_type;
  float rope_factor = 0.0f;
  int64_t rope_original_ctx = 0;
};

// Whether `path` (a config.json) names DeepseekV4ForCausalLM in architectures.
bool is_deepseek4_config(const std::string& path);

// Reads and validates a config.json; `layers` > 0 keeps only the first
// `layers` layers (moe-synth --layers). Throws moe::Error naming the key.
Deepseek4HfConfig read_deepseek4_config(const std::string& path, int64_t layers = 0);

// The general.* and deepseek4.* keys, in the converter's order; the
// tokenizer's keys are the caller's.
void deepseek4_model_metadata(const Deepseek4HfConfig& c, int64_t n_vocab, uint32_t file_type,
                              const std::string& model_name, GgufKvList& kv);

// The tensors of a deepseek4 file, in the order llama.cpp's tools write them.
std::vector<LayoutTensor> deepseek4_tensors(const Deepseek4HfConfig& c, int64_t n_vocab);

// The MTP module as an "MTP companion" GGUF, ik_llama.cpp's layout for
// V4's module (its convert_hf_to_gguf.py with mtp_only): the keys of a
// model of num_hidden_layers + 1 layers with nextn_predict_layers 1, and
// only the embedding, the head, the module's own hyper-connection head
// (output_hc_*) and layer N = num_hidden_layers: a full V4 block plus
// nextn.{eh_proj, enorm, hnorm, shared_head_norm}.
void deepseek4_mtp_companion_metadata(const Deepseek4HfConfig& c, int64_t n_vocab, uint32_t file_type,
                                      const std::string& model_name, GgufKvList& kv);
std::vector<LayoutTensor> deepseek4_mtp_companion_tensors(const Deepseek4HfConfig& c, int64_t n_vocab);

}  // namespace moe
