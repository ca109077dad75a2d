#include "model/deepseek4_config.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "gguf/gguf_reader.h"

namespace moe {

namespace {

// A per-layer key written either as one value or as an array of n.
std::vector<float> f32_per_layer(const GgufFile& f, const std::string& key, int64_t n, float fallback, bool required) {
  const GgufValue* v = f.find(key);
  if (!v) {
    if (required) throw_error("%s: key '%s' is missing", f.path().c_str(), key.c_str());
    return std::vector<float>(static_cast<size_t>(n), fallback);
  }
  if (!v->is_array()) return std::vector<float>(static_cast<size_t>(n), f.get_f32(key));
  std::vector<float> a = f.get_f32_array(key);
  if (static_cast<int64_t>(a.size()) < n)
    throw_error("%s: key '%s' has %zu values for %lld layers", f.path().c_str(), key.c_str(), a.size(),
                static_cast<long long>(n));
  a.resize(static_cast<size_t>(n));
  return a;
}

}  // namespace

std::string Deepseek4Config::describe() const {
  return strfmt("layers=%lld hidden=%lld heads=%lld head_dim=%lld rope=%lld q_lora=%lld window=%lld hc=%lld "
                "experts=%lld/%lld index=%lldx%lld top%lld",
                static_cast<long long>(num_hidden_layers), static_cast<long long>(hidden_size),
                static_cast<long long>(num_attention_heads), static_cast<long long>(head_dim),
                static_cast<long long>(rope_dim), static_cast<long long>(q_lora_rank),
                static_cast<long long>(sliding_window), static_cast<long long>(hc),
                static_cast<long long>(num_experts_per_tok), static_cast<long long>(n_routed_experts),
                static_cast<long long>(index_n_heads), static_cast<long long>(index_head_dim),
                static_cast<long long>(index_topk));
}

Deepseek4Config Deepseek4Config::from_gguf(const GgufFile& f) {
  const std::string arch = f.get_string("general.architecture");
  if (arch != "deepseek4")
    throw_error("%s: architecture '%s' is not deepseek4", f.path().c_str(), arch.c_str());
  auto key = [&](const char* k) { return arch + "." + k; };
  Deepseek4Config c;
  c.architecture = arch;
  c.hidden_size = f.get_u32(key("embedding_length"));
  const int64_t n_layer_all = f.get_u32(key("block_count"));
  c.num_nextn_predict_layers = f.get_u32_opt(key("nextn_predict_layers")).value_or(0);
  c.num_hidden_layers = n_layer_all - c.num_nextn_predict_layers;
  c.max_position_embeddings = f.get_u32(key("context_length"));
  c.rms_norm_eps = f.get_f32(key("attention.layer_norm_rms_epsilon"));
  c.num_attention_heads = f.get_u32(key("attention.head_count"));
  const int64_t n_head_kv = f.get_u32_opt(key("attention.head_count_kv")).value_or(1);
  c.head_dim = f.get_u32(key("attention.key_length"));
  const int64_t v_len = f.get_u32_opt(key("attention.value_length")).value_or(c.head_dim);
  c.rope_dim = f.get_u32(key("rope.dimension_count"));
  c.q_lora_rank = f.get_u32(key("attention.q_lora_rank"));
  c.sliding_window = f.get_u32(key("attention.sliding_window"));
  c.o_groups = f.get_u32(key("attention.output_group_count"));
  c.o_lora_rank = f.get_u32(key("attention.output_lora_rank"));
  c.rope_theta = f.get_f32_opt(key("rope.freq_base")).value_or(10000.0f);
  c.compress_rope_theta = f.get_f32(key("attention.compress_rope_freq_base"));
  c.rope_scaling = f.get_string_opt(key("rope.scaling.type")).value_or("none");
  if (c.rope_scaling != "none" && c.rope_scaling != "linear" && c.rope_scaling != "yarn")
    throw_error("%s: %s = '%s': deepseek4 supports none, linear and yarn", f.path().c_str(),
                key("rope.scaling.type").c_str(), c.rope_scaling.c_str());
  if (c.rope_scaling != "none") {
    const float factor = f.get_f32_opt(key("rope.scaling.factor")).value_or(0.0f);
    c.rope_factor = factor == 0.0f ? 1.0f : factor;  // llama.cpp: 0 or absent means 1
    if (!(c.rope_factor > 0.0f) || !std::isfinite(c.rope_factor))
      throw_error("%s: %s = %g: must be positive", f.path().c_str(), key("rope.scaling.factor").c_str(), factor);
  }
  c.rope_orig_ctx = f.get_u32_opt(key("rope.scaling.original_context_length")).value_or(0);
  // llama.cpp's deepseek4 loader reads no rope.scaling.yarn_* keys: the ramp
  // is always beta_fast 32, beta_slow 1 (the release's values) and YaRN's
  // ext_factor 1. A file that sets them is run as llama.cpp runs it.

  const std::vector<int32_t> ratios = f.get_i32_array(key("attention.compress_ratios"));
  if (static_cast<int64_t>(ratios.size()) < n_layer_all)
    throw_error("%s: %s has %zu entries for %lld layers", f.path().c_str(), key("attention.compress_ratios").c_str(),
                ratios.size(), static_cast<long long>(n_layer_all));
  for (int64_t il = 0; il < n_layer_all; ++il) {
    const int32_t r = ratios[static_cast<size_t>(il)];
    if (r != 0 && r != 4 && r != 128)
      throw_error("%s: %s[%lld] = %d: only 0 (window), 4 (CSA) and 128 (HCA) are defined", f.path().c_str(),
                  key("attention.compress_ratios").c_str(), static_cast<long long>(il), r);
    c.compress_ratios.push_back(r);
  }

  c.index_n_heads = f.get_u32_opt(key("attention.indexer.head_count")).value_or(0);
  c.index_head_dim = f.get_u32_opt(key("attention.indexer.key_length")).value_or(0);
  c.index_topk = f.get_u32_opt(key("attention.indexer.top_k")).value_or(0);

  c.hc = f.get_u32(key("hyper_connection.count"));
  c.sinkhorn_iters = f.get_u32(key("hyper_connection.sinkhorn_iterations"));
  c.hc_eps = f.get_f32(key("hyper_connection.epsilon"));

  c.n_routed_experts = f.get_u32(key("expert_count"));
  c.num_experts_per_tok = f.get_u32(key("expert_used_count"));
  c.moe_intermediate_size = f.get_u32(key("expert_feed_forward_length"));
  c.n_shared_experts = f.get_u32_opt(key("expert_shared_count")).value_or(0);
  c.hash_layers = f.get_u32_opt(key("hash_layer_count")).value_or(0);
  c.routed_scaling_factor = f.get_f32_opt(key("expert_weights_scale")).value_or(1.0f);
  if (c.routed_scaling_factor == 0.0f) c.routed_scaling_factor = 1.0f;  // llama.cpp: 0 means unset
  c.norm_topk_prob = f.get_bool_opt(key("expert_weights_norm")).value_or(false);
  const uint32_t gating = f.get_u32_opt(key("expert_gating_func")).value_or(4);
  if (gating == 1) c.scoring = ScoringFunc::kSoftmax;
  else if (gating == 2) c.scoring = ScoringFunc::kSigmoid;
  else if (gating == 4) c.scoring = ScoringFunc::kSqrtSoftplus;
  else
    throw_error("%s: %s = %u is not supported (1 softmax, 2 sigmoid, 4 sqrt-softplus)", f.path().c_str(),
                key("expert_gating_func").c_str(), gating);
  c.swiglu_clamp_exp = f32_per_layer(f, key("swiglu_clamp_exp"), n_layer_all, 0.0f, false);
  c.swiglu_clamp_shexp = f.has(key("swiglu_clamp_shexp"))
                             ? f32_per_layer(f, key("swiglu_clamp_shexp"), n_layer_all, 0.0f, true)
                             : c.swiglu_clamp_exp;  // llama.cpp: the routed experts' limit

  const std::string vocab_key = key("vocab_size");
  c.vocab_size = f.has(vocab_key) ? f.get_u32(vocab_key)
                                  : static_cast<int64_t>(f.get_string_array("tokenizer.ggml.tokens").size());

  auto check = [&](bool ok, const char* what) {
    if (!ok) throw_error("%s: invalid deepseek4 hyper-parameters: %s (%s)", f.path().c_str(), what, c.describe().c_str());
  };
  check(c.num_hidden_layers > 0, "no layers");
  check(c.hidden_size > 0 && c.num_attention_heads > 0 && c.head_dim > 0, "empty attention");
  check(n_head_kv == 1, "head_count_kv must be 1 (one shared KV head)");
  check(v_len == c.head_dim, "value_length must equal key_length (K = V)");
  check(c.rope_dim > 0 && c.rope_dim <= c.head_dim && c.rope_dim % 2 == 0, "rope.dimension_count");
  check(c.q_lora_rank > 0, "q_lora_rank must be set");
  check(c.sliding_window > 0, "sliding_window must be set");
  check(c.o_groups > 0 && c.num_attention_heads % c.o_groups == 0, "output_group_count must divide head_count");
  check(c.o_lora_rank > 0, "output_lora_rank");
  check(c.hc >= 1 && c.sinkhorn_iters >= 1, "hyper_connection count and sinkhorn_iterations");
  check(c.n_routed_experts > 0 && c.num_experts_per_tok > 0 && c.num_experts_per_tok <= c.n_routed_experts,
        "expert counts");
  check(c.hash_layers <= c.num_hidden_layers, "hash_layer_count exceeds the layers");
  check(c.vocab_size > 0, "vocab_size");
  bool has_csa = false;
  for (int64_t il = 0; il < n_layer_all; ++il) has_csa |= c.compress_ratios[static_cast<size_t>(il)] == 4;
  if (has_csa) {
    check(c.index_n_heads > 0 && c.index_head_dim >= c.rope_dim && c.index_topk > 0,
          "CSA layers need attention.indexer.{head_count,key_length,top_k}");
  }
  if (c.rope_orig_ctx == 0) c.rope_orig_ctx = c.max_position_embeddings;
  return c;
}

RopeScalingParams Deepseek4Config::rope_scaling_params(int64_t il) const {
  RopeScalingParams s;
  if (compress_ratio(il) == 0 || rope_scaling == "none") return s;
  // llama.cpp (models/deepseek4.cpp, llama-context.cpp, ggml_rope_yarn_corr_dims):
  // freq_scale = 1/factor; ext_factor 1 for YaRN; the ramp's ends from the
  // original context and the compressed layers' base; attn_factor
  // 1/(1 + 0.1 ln(1/freq_scale)) against rope_yarn's 1 + 0.1 ln(1/freq_scale).
  s.freq_scale = 1.0f / rope_factor;
  s.ext_factor = rope_scaling == "yarn" ? 1.0f : 0.0f;
  auto corr_dim = [&](float n_rot) {
    return static_cast<float>(rope_dim) *
           std::log(static_cast<float>(rope_orig_ctx) / (n_rot * 2.0f * static_cast<float>(M_PI))) /
           (2.0f * std::log(compress_rope_theta));
  };
  s.corr_low = std::max(0.0f, std::floor(corr_dim(yarn_beta_fast)));
  s.corr_high = std::min(static_cast<float>(rope_dim - 1), std::ceil(corr_dim(yarn_beta_slow)));
  if (s.ext_factor != 0.0f) {
    const float attn_factor = 1.0f / (1.0f + 0.1f * std::log(1.0f / s.freq_scale));
    s.mscale = attn_factor * (1.0f + 0.1f * std::log(1.0f / s.freq_scale));
  }
  return s;
}

}  // namespace moe
