#include "convert/deepseek2_gguf_layout.h"

#include <charconv>
#include <map>

#include "core/error.h"

namespace moe {

namespace {

// llama.cpp's converter writes DeepSeek-V3.2 as deepseek32, the rest of the
// family as deepseek2.
std::string gguf_arch(const HfConfig& c) {
  return c.architecture == "DeepseekV32ForCausalLM" ? "deepseek32" : "deepseek2";
}

GgufValue u32_of(const HfConfig& c, const char* what, int64_t v) {
  if (v < 0 || v > static_cast<int64_t>(UINT32_MAX))
    throw_error("%s: %s = %lld does not fit a GGUF uint32", c.path.c_str(), what, static_cast<long long>(v));
  return GgufValue::u32(static_cast<uint32_t>(v));
}

// HF suffix after "model.layers.N." -> GGUF suffix after "blk.N." (tensor_mapping.py, deepseek2 entries).
const std::map<std::string, std::string>& layer_tensor_map() {
  static const std::map<std::string, std::string> m = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.q_a_proj.weight", "attn_q_a.weight"},
      {"self_attn.q_a_layernorm.weight", "attn_q_a_norm.weight"},
      {"self_attn.q_b_proj.weight", "attn_q_b.weight"},
      {"self_attn.kv_a_proj_with_mqa.weight", "attn_kv_a_mqa.weight"},
      {"self_attn.kv_a_layernorm.weight", "attn_kv_a_norm.weight"},
      {"self_attn.kv_b_proj.weight", "attn_kv_b.weight"},
      {"self_attn.k_b_proj.weight", "attn_k_b.weight"},
      {"self_attn.v_b_proj.weight", "attn_v_b.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
      {"mlp.gate.weight", "ffn_gate_inp.weight"},
      // The converter first renames e_score_correction_bias to e_score_correction.bias.
      {"mlp.gate.e_score_correction_bias", "exp_probs_b.bias"},
      {"mlp.gate.e_score_correction.bias", "exp_probs_b.bias"},
      {"mlp.experts.gate_proj.weight", "ffn_gate_exps.weight"},
      {"mlp.experts.up_proj.weight", "ffn_up_exps.weight"},
      {"mlp.experts.down_proj.weight", "ffn_down_exps.weight"},
      {"mlp.shared_experts.gate_proj.weight", "ffn_gate_shexp.weight"},
      {"mlp.shared_experts.up_proj.weight", "ffn_up_shexp.weight"},
      {"mlp.shared_experts.down_proj.weight", "ffn_down_shexp.weight"},
      // DeepSeek-V3.2's lightning indexer.
      {"self_attn.indexer.wq_b.weight", "indexer.attn_q_b.weight"},
      {"self_attn.indexer.wk.weight", "indexer.attn_k.weight"},
      {"self_attn.indexer.k_norm.weight", "indexer.k_norm.weight"},
      {"self_attn.indexer.k_norm.bias", "indexer.k_norm.bias"},
      {"self_attn.indexer.weights_proj.weight", "indexer.proj.weight"},
  };
  return m;
}

// DeepSeek's MTP block (model.layers.{num_hidden_layers}) adds these.
const std::map<std::string, std::string>& nextn_tensor_map() {
  static const std::map<std::string, std::string> m = {
      {"eh_proj.weight", "nextn.eh_proj.weight"},
      {"embed_tokens.weight", "nextn.embed_tokens.weight"},
      {"enorm.weight", "nextn.enorm.weight"},
      {"hnorm.weight", "nextn.hnorm.weight"},
      {"shared_head.head.weight", "nextn.shared_head_head.weight"},
      {"shared_head.norm.weight", "nextn.shared_head_norm.weight"},
  };
  return m;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::optional<ConvertOutType> convert_outtype_from_name(const std::string& name) {
  if (name == "f32") return ConvertOutType::F32;
  if (name == "f16") return ConvertOutType::F16;
  if (name == "bf16") return ConvertOutType::BF16;
  if (name == "q8_0") return ConvertOutType::Q8_0;
  return std::nullopt;
}

const char* convert_outtype_name(ConvertOutType t) {
  switch (t) {
    case ConvertOutType::F32: return "f32";
    case ConvertOutType::F16: return "f16";
    case ConvertOutType::BF16: return "bf16";
    case ConvertOutType::Q8_0: return "q8_0";
  }
  return "?";
}

uint32_t convert_file_type(ConvertOutType t) {
  switch (t) {
    case ConvertOutType::F32: return 0;
    case ConvertOutType::F16: return 1;
    case ConvertOutType::BF16: return 32;
    case ConvertOutType::Q8_0: return 7;
  }
  return 0;
}

void GgufKvList::set(const std::string& key, GgufValue value) {
  for (auto& kv : items_) {
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  }
  items_.emplace_back(key, std::move(value));
}

const GgufValue* GgufKvList::find(const std::string& key) const {
  for (const auto& kv : items_)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

int64_t deepseek2_block_count(const HfConfig& c, const Deepseek2LayoutOptions& o) {
  return c.num_hidden_layers + (o.keep_mtp ? c.num_nextn_predict_layers : 0);
}

void deepseek2_model_metadata(const HfConfig& c, const Deepseek2LayoutOptions& o, GgufKvList& kv) {
  auto u32 = [&](const char* what, int64_t v) { return u32_of(c, what, v); };
  auto f32 = [](double v) { return GgufValue::f32(static_cast<float>(v)); };
  const std::string arch = gguf_arch(c);
  auto arch_key = [&](const char* suffix) { return arch + "." + suffix; };

  kv.set("general.architecture", GgufValue::string(arch));
  kv.set("general.type", GgufValue::string("model"));
  kv.set("general.name", GgufValue::string(o.model_name));

  // TextModel.set_gguf_parameters (with num_key_value_heads forced to 1:
  // MLA is stored as MQA with one big latent head).
  kv.set(arch_key("block_count"), u32("block_count", deepseek2_block_count(c, o)));
  if (c.max_position_embeddings) kv.set(arch_key("context_length"), u32("max_position_embeddings", *c.max_position_embeddings));
  kv.set(arch_key("embedding_length"), u32("hidden_size", c.hidden_size));
  kv.set(arch_key("feed_forward_length"), u32("intermediate_size", c.intermediate_size));
  kv.set(arch_key("attention.head_count"), u32("num_attention_heads", c.num_attention_heads));
  kv.set(arch_key("attention.head_count_kv"), GgufValue::u32(1));
  if (c.rope_scaling && c.rope_scaling->factor) {
    const HfRopeScaling& rs = *c.rope_scaling;
    if (rs.type == "linear") {
      kv.set(arch_key("rope.scaling.type"), GgufValue::string("linear"));
      kv.set(arch_key("rope.scaling.factor"), f32(*rs.factor));
    } else if (rs.type == "yarn") {
      kv.set(arch_key("rope.scaling.type"), GgufValue::string("yarn"));
      kv.set(arch_key("rope.scaling.factor"), f32(*rs.factor));
      kv.set(arch_key("rope.scaling.original_context_length"),
             u32("rope_scaling.original_max_position_embeddings", *rs.original_max_position_embeddings));
      if (rs.extrapolation_factor) kv.set(arch_key("rope.scaling.yarn_ext_factor"), f32(*rs.extrapolation_factor));
      if (rs.attention_factor) kv.set(arch_key("rope.scaling.yarn_attn_factor"), f32(*rs.attention_factor));
      if (rs.beta_fast) kv.set(arch_key("rope.scaling.yarn_beta_fast"), f32(*rs.beta_fast));
      if (rs.beta_slow) kv.set(arch_key("rope.scaling.yarn_beta_slow"), f32(*rs.beta_slow));
    }
  }
  if (c.rope_theta) kv.set(arch_key("rope.freq_base"), f32(*c.rope_theta));
  kv.set(arch_key("attention.layer_norm_rms_epsilon"), f32(c.rms_norm_eps));
  if (c.n_routed_experts) kv.set(arch_key("expert_count"), u32("n_routed_experts", *c.n_routed_experts));
  if (c.num_experts_per_tok) kv.set(arch_key("expert_used_count"), u32("num_experts_per_tok", *c.num_experts_per_tok));
  if (c.n_group) kv.set(arch_key("expert_group_count"), u32("n_group", *c.n_group));
  if (c.topk_group) kv.set(arch_key("expert_group_used_count"), u32("topk_group", *c.topk_group));
  // llama_expert_gating_func_type: SOFTMAX 1, SIGMOID 2.
  if (c.scoring_func) kv.set(arch_key("expert_gating_func"), GgufValue::u32(*c.scoring_func == "sigmoid" ? 2 : 1));
  if (c.head_dim) {
    kv.set(arch_key("attention.key_length"), u32("head_dim", *c.head_dim));
    kv.set(arch_key("attention.value_length"), u32("head_dim", *c.head_dim));
  }
  kv.set("general.file_type", GgufValue::u32(convert_file_type(o.outtype)));

  // DeepseekV2Model.set_gguf_parameters.
  kv.set(arch_key("leading_dense_block_count"), u32("first_k_dense_replace", c.first_k_dense_replace));
  kv.set(arch_key("vocab_size"), u32("vocab_size", c.vocab_size));
  if (c.q_lora_rank) kv.set(arch_key("attention.q_lora_rank"), u32("q_lora_rank", *c.q_lora_rank));
  kv.set(arch_key("attention.kv_lora_rank"), u32("kv_lora_rank", c.kv_lora_rank));
  // The cache holds the latent (kv_lora) plus the rope part, one "head".
  kv.set(arch_key("attention.key_length"), u32("kv_lora_rank + qk_rope_head_dim", c.kv_lora_rank + c.qk_rope_head_dim));
  kv.set(arch_key("attention.value_length"), u32("kv_lora_rank", c.kv_lora_rank));
  kv.set(arch_key("attention.key_length_mla"),
         u32("qk_nope_head_dim + qk_rope_head_dim", c.qk_nope_head_dim + c.qk_rope_head_dim));
  kv.set(arch_key("attention.value_length_mla"), u32("v_head_dim", c.v_head_dim));
  kv.set(arch_key("expert_feed_forward_length"), u32("moe_intermediate_size", c.moe_intermediate_size));
  if (c.n_routed_experts) kv.set(arch_key("expert_count"), u32("n_routed_experts", *c.n_routed_experts));
  kv.set(arch_key("expert_shared_count"), u32("n_shared_experts", c.n_shared_experts));
  if (c.routed_scaling_factor) kv.set(arch_key("expert_weights_scale"), f32(*c.routed_scaling_factor));
  if (c.norm_topk_prob) kv.set(arch_key("expert_weights_norm"), GgufValue::boolean(true));
  kv.set(arch_key("rope.dimension_count"), u32("qk_rope_head_dim", c.qk_rope_head_dim));
  // llama.cpp divides this by 0.1 again when loading ([TAG_DEEPSEEK2_YARN_LOG_MUL_FIX]).
  if (c.rope_scaling && c.rope_scaling->mscale_all_dim)
    kv.set(arch_key("rope.scaling.yarn_log_multiplier"), f32(0.1 * *c.rope_scaling->mscale_all_dim));
  // As the converter does for the MTP-carrying deepseek2 models (Glm4MoeLite, DeepseekV32).
  if (o.keep_mtp && c.num_nextn_predict_layers > 0)
    kv.set(arch_key("nextn_predict_layers"), u32("num_nextn_predict_layers", c.num_nextn_predict_layers));

  // DeepseekV32Model.set_gguf_parameters.
  if (c.index_n_heads) {
    kv.set(arch_key("attention.indexer.head_count"), u32("index_n_heads", *c.index_n_heads));
    kv.set(arch_key("attention.indexer.key_length"), u32("index_head_dim", *c.index_head_dim));
    kv.set(arch_key("attention.indexer.top_k"), u32("index_topk", *c.index_topk));
  }

  kv.set("general.quantization_version", GgufValue::u32(2));  // GGML_QNT_VERSION
}

std::optional<std::string> deepseek2_tensor_name(const std::string& hf, int64_t num_hidden_layers) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight" || hf == "model.lm_head.weight") return "output.weight";
  static const std::string prefix = "model.layers.";
  if (hf.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  const char* p = hf.data() + prefix.size();
  const char* end = hf.data() + hf.size();
  int64_t bid = -1;
  const auto [q, ec] = std::from_chars(p, end, bid);
  if (ec != std::errc() || q == p || q == end || *q != '.' || bid < 0) return std::nullopt;
  const std::string rest(q + 1, end);
  const std::string blk = "blk." + std::to_string(bid) + ".";
  if (bid >= num_hidden_layers) {
    const auto& nm = nextn_tensor_map();
    if (auto it = nm.find(rest); it != nm.end()) return blk + it->second;
  }
  const auto& lm = layer_tensor_map();
  if (auto it = lm.find(rest); it != lm.end()) return blk + it->second;
  return std::nullopt;
}

GgmlType deepseek2_tensor_type(const std::string& name, size_t n_dims, int64_t ne0, ConvertOutType outtype) {
  // "Most of the codebase that takes in 1D tensors or norms only handles F32 tensors."
  if (n_dims <= 1 || ends_with(name, "_norm.weight")) return GgmlType::F32;
  // Tensors llama.cpp's quantizer also keeps in F32: the router, and biases.
  if (ends_with(name, ".ffn_gate_inp.weight") || !ends_with(name, ".weight")) return GgmlType::F32;
  return outtype_matrix_type(outtype, ne0);
}

GgmlType outtype_matrix_type(ConvertOutType outtype, int64_t ne0) {
  switch (outtype) {
    case ConvertOutType::F32: return GgmlType::F32;
    case ConvertOutType::F16: return GgmlType::F16;
    case ConvertOutType::BF16: return GgmlType::BF16;
    case ConvertOutType::Q8_0: return ne0 % 32 == 0 ? GgmlType::Q8_0 : GgmlType::F16;
  }
  return GgmlType::F32;
}

}  // namespace moe
