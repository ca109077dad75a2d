#include "model/deepseek2_config.h"

#include <cmath>

#include "core/error.h"
#include "gguf/gguf_reader.h"

namespace moe {

namespace {

// YaRN's attention temperature: mscale(s, m) = 0.1 m ln s + 1 for s > 1.
// https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/inference/model.py (softmax_scale)
float yarn_get_mscale(float scale, float mscale) {
  return scale <= 1.0f ? 1.0f : 0.1f * mscale * std::log(scale) + 1.0f;
}

}  // namespace

// With YaRN, ggml's rope multiplies cos/sin by attn_factor * (1 + 0.1 ln s);
// llama.cpp pre-divides attn_factor by (1 + 0.1 ln s) so the net factor is the
// "original" attn_factor: 1 when yarn_log_multiplier is present (DeepSeek's
// mscale == mscale_all_dim), else mscale(s, 1). The attention logits are then
// scaled by (attn_factor * mscale(s, mscale_all_dim))^2 / sqrt(qk_head_dim).
// See llama.cpp llama-context.cpp (yarn_attn_factor) and models/deepseek2.cpp
// (kq_scale), https://github.com/ggml-org/llama.cpp/discussions/7416.
float Deepseek2Config::rope_mscale() const {
  if (rope_scaling != RopeScaling::kYarn) return rope_attn_factor;
  const float base = mscale_all_dim != 0.0f ? 1.0f : yarn_get_mscale(rope_factor, 1.0f);
  return base * rope_attn_factor;
}

float Deepseek2Config::softmax_scale() const {
  const float inv_sqrt = 1.0f / std::sqrt(static_cast<float>(qk_head_dim()));
  if (rope_scaling != RopeScaling::kYarn) return inv_sqrt;
  const float base = mscale_all_dim != 0.0f ? 1.0f : yarn_get_mscale(rope_factor, 1.0f);
  const float m = base * (1.0f + 0.1f * mscale_all_dim * std::log(rope_factor));
  return m * m * inv_sqrt;
}

Deepseek2Config Deepseek2Config::from_gguf(const GgufFile& f) {
  const std::string arch = f.get_string("general.architecture");
  if (arch != "deepseek2" && arch != "deepseek32")
    throw_error("%s: architecture '%s' is not supported (expected deepseek2 or deepseek32)", f.path().c_str(),
                arch.c_str());
  auto key = [&](const char* k) { return arch + "." + k; };
  Deepseek2Config c;
  c.architecture = arch;
  c.hidden_size = f.get_u32(key("embedding_length"));
  const int64_t n_layer_all = f.get_u32(key("block_count"));
  c.num_nextn_predict_layers = f.get_u32_opt(key("nextn_predict_layers")).value_or(0);
  c.num_hidden_layers = n_layer_all - c.num_nextn_predict_layers;
  c.num_attention_heads = f.get_u32(key("attention.head_count"));
  c.q_lora_rank = f.get_u32_opt(key("attention.q_lora_rank")).value_or(0);
  c.kv_lora_rank = f.get_u32(key("attention.kv_lora_rank"));
  c.qk_rope_head_dim = f.get_u32(key("rope.dimension_count"));
  // key_length_mla / value_length_mla are the per-head sizes; older files
  // only have key_length / value_length with the same meaning.
  const int64_t k_len = f.get_u32_opt(key("attention.key_length_mla")).value_or(f.get_u32(key("attention.key_length")));
  const int64_t v_len = f.get_u32_opt(key("attention.value_length_mla")).value_or(f.get_u32(key("attention.value_length")));
  c.qk_nope_head_dim = k_len - c.qk_rope_head_dim;
  c.v_head_dim = v_len;
  c.intermediate_size = f.get_u32(key("feed_forward_length"));
  c.moe_intermediate_size = f.get_u32(key("expert_feed_forward_length"));
  c.n_routed_experts = f.get_u32(key("expert_count"));
  c.num_experts_per_tok = f.get_u32(key("expert_used_count"));
  c.n_shared_experts = f.get_u32_opt(key("expert_shared_count")).value_or(0);
  c.first_k_dense_replace = f.get_u32_opt(key("leading_dense_block_count")).value_or(0);
  c.n_group = f.get_u32_opt(key("expert_group_count")).value_or(1);
  c.topk_group = f.get_u32_opt(key("expert_group_used_count")).value_or(c.n_group);
  if (c.n_group == 0) c.n_group = 1, c.topk_group = 1;
  c.routed_scaling_factor = f.get_f32_opt(key("expert_weights_scale")).value_or(1.0f);
  if (c.routed_scaling_factor == 0.0f) c.routed_scaling_factor = 1.0f;  // llama.cpp: 0 means unset
  c.norm_topk_prob = f.get_bool_opt(key("expert_weights_norm")).value_or(false);
  // expert_gating_func: 1 softmax, 2 sigmoid; absent in old V2/V2.5 files, which are softmax.
  const uint32_t gating = f.get_u32_opt(key("expert_gating_func")).value_or(1);
  if (gating == 1) c.scoring_func = ScoringFunc::kSoftmax;
  else if (gating == 2) c.scoring_func = ScoringFunc::kSigmoid;
  else throw_error("%s: deepseek2.expert_gating_func = %u is not supported (1 softmax, 2 sigmoid)", f.path().c_str(), gating);
  c.rms_norm_eps = f.get_f32(key("attention.layer_norm_rms_epsilon"));
  c.max_position_embeddings = f.get_u32(key("context_length"));
  c.rope_theta = f.get_f32_opt(key("rope.freq_base")).value_or(10000.0f);

  const std::string scaling = f.get_string_opt(key("rope.scaling.type")).value_or("none");
  if (scaling == "yarn") {
    c.rope_scaling = RopeScaling::kYarn;
    c.rope_factor = f.get_f32(key("rope.scaling.factor"));
    c.original_max_position_embeddings = f.get_u32(key("rope.scaling.original_context_length"));
    c.beta_fast = f.get_f32_opt(key("rope.scaling.yarn_beta_fast")).value_or(32.0f);
    c.beta_slow = f.get_f32_opt(key("rope.scaling.yarn_beta_slow")).value_or(1.0f);
    // The converter writes 0.1 * mscale_all_dim (llama.cpp TAG_DEEPSEEK2_YARN_LOG_MUL_FIX).
    c.mscale_all_dim = f.get_f32_opt(key("rope.scaling.yarn_log_multiplier")).value_or(0.0f) / 0.1f;
    if (c.rope_factor <= 0.0f) throw_error("%s: deepseek2.rope.scaling.factor must be positive", f.path().c_str());
  } else if (scaling != "none") {
    throw_error("%s: deepseek2.rope.scaling.type '%s' is not supported (none, yarn)", f.path().c_str(), scaling.c_str());
  }
  c.rope_attn_factor = f.get_f32_opt(key("rope.scaling.attn_factor")).value_or(1.0f);

  if (arch == "deepseek32") {
    c.index_n_heads = f.get_u32(key("attention.indexer.head_count"));
    c.index_head_dim = f.get_u32(key("attention.indexer.key_length"));
    c.index_topk = f.get_u32(key("attention.indexer.top_k"));
  }

  const std::string vocab_key = key("vocab_size");
  c.vocab_size = f.has(vocab_key) ? f.get_u32(vocab_key)
                                  : static_cast<int64_t>(f.get_string_array("tokenizer.ggml.tokens").size());

  auto check = [&](bool ok, const char* what) {
    if (!ok) throw_error("%s: invalid deepseek2 hyper-parameters: %s (%s)", f.path().c_str(), what, c.describe().c_str());
  };
  check(c.hidden_size > 0 && c.num_hidden_layers > 0 && c.num_attention_heads > 0, "sizes must be positive");
  check(c.qk_nope_head_dim > 0 && c.qk_rope_head_dim > 0 && c.qk_rope_head_dim % 2 == 0 && c.v_head_dim > 0,
        "head sizes (key_length_mla > rope.dimension_count, even rope dims)");
  check(c.kv_lora_rank > 0, "kv_lora_rank must be positive");
  check(c.first_k_dense_replace <= c.num_hidden_layers, "leading_dense_block_count exceeds block_count");
  if (c.first_k_dense_replace < c.num_hidden_layers) {
    check(c.n_routed_experts > 0 && c.num_experts_per_tok > 0 && c.num_experts_per_tok <= c.n_routed_experts,
          "expert_used_count must be in 1..expert_count");
    check(c.n_routed_experts % c.n_group == 0 && c.n_group <= 256, "expert_count must be a multiple of expert_group_count (at most 256 groups)");
    check(c.topk_group >= 1 && c.topk_group <= c.n_group, "expert_group_used_count must be in 1..expert_group_count");
    check(c.num_experts_per_tok <= c.topk_group * (c.n_routed_experts / c.n_group),
          "expert_used_count exceeds the experts of the chosen groups");
  }
  check(c.vocab_size > 0, "vocab_size must be positive");
  if (arch == "deepseek32") {
    check(c.q_lora_rank > 0, "deepseek32 needs q-LoRA (attention.q_lora_rank): the indexer reads its latent");
    check(c.index_n_heads > 0 && c.index_topk > 0, "attention.indexer.head_count and top_k must be positive");
    check(c.index_head_dim >= c.qk_rope_head_dim && c.index_head_dim <= 4096 &&
              (c.index_head_dim & (c.index_head_dim - 1)) == 0,
          "attention.indexer.key_length must be a power of two (its Hadamard rotation) holding the rotary part");
  }
  return c;
}

std::string Deepseek2Config::describe() const {
  return strfmt(
      "hidden %lld, layers %lld (+%lld MTP, %lld dense), heads %lld, q_lora %lld, kv_lora %lld, qk %lld+%lld, v %lld, "
      "ffn %lld, experts %lld (top-%lld, %lld shared, expert ffn %lld, groups %lld/%lld, %s, norm %d, scale %g), "
      "rope %s theta %g factor %g, vocab %lld%s",
      (long long)hidden_size, (long long)num_hidden_layers, (long long)num_nextn_predict_layers,
      (long long)first_k_dense_replace, (long long)num_attention_heads, (long long)q_lora_rank, (long long)kv_lora_rank,
      (long long)qk_nope_head_dim, (long long)qk_rope_head_dim, (long long)v_head_dim, (long long)intermediate_size,
      (long long)n_routed_experts, (long long)num_experts_per_tok, (long long)n_shared_experts,
      (long long)moe_intermediate_size, (long long)topk_group, (long long)n_group,
      scoring_func == ScoringFunc::kSigmoid ? "sigmoid" : "softmax", norm_topk_prob ? 1 : 0, routed_scaling_factor,
      rope_scaling == RopeScaling::kYarn ? "yarn" : "plain", rope_theta, rope_factor, (long long)vocab_size,
      has_indexer() ? strfmt(", indexer %lld heads x %lld, top-%lld", (long long)index_n_heads,
                             (long long)index_head_dim, (long long)index_topk).c_str()
                    : "");
}

}  // namespace moe
