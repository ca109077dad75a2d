#include "convert/deepseek4_gguf_layout.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <utility>

#include "convert/quantize_plan.h"  // llama_tensor_order
#include "core/error.h"

namespace moe {

namespace {

using Json = nlohmann::json;

Json read_json(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw_error("cannot read '%s'", path.c_str());
  try {
    return Json::parse(f);
  } catch (const Json::exception& e) {
    throw_error("%s: not valid JSON: %s", path.c_str(), e.what());
  }
}

// A key of the config, required, of JSON type T.
template <typename T>
T need(const Json& c, const char* key, const std::string& path) {
  if (!c.contains(key)) throw_error("%s: key '%s' is missing (a DeepSeek-V4 config needs it)", path.c_str(), key);
  try {
    return c.at(key).get<T>();
  } catch (const Json::exception&) {
    throw_error("%s: key '%s' has the wrong type", path.c_str(), key);
  }
}

// An optional key; absent or null gives `fallback`.
template <typename T>
T opt(const Json& c, const char* key, T fallback, const std::string& path) {
  if (!c.contains(key) || c.at(key).is_null()) return fallback;
  try {
    return c.at(key).get<T>();
  } catch (const Json::exception&) {
    throw_error("%s: key '%s' has the wrong type", path.c_str(), key);
  }
}

std::optional<int64_t> opt_id(const Json& c, const char* key, const std::string& path) {
  if (!c.contains(key) || c.at(key).is_null()) return std::nullopt;
  return opt<int64_t>(c, key, 0, path);
}

}  // namespace

bool is_deepseek4_config(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) return false;
  std::ifstream f(path);
  const Json c = Json::parse(f, nullptr, /*allow_exceptions=*/false);
  if (!c.is_object() || !c.contains("architectures") || !c["architectures"].is_array()) return false;
  for (const Json& a : c["architectures"])
    if (a.is_string() && a.get<std::string>() == "DeepseekV4ForCausalLM") return true;
  return false;
}

Deepseek4HfConfig read_deepseek4_config(const std::string& path, int64_t layers) {
  const Json j = read_json(path);
  if (!j.is_object()) throw_error("%s: expected a JSON object", path.c_str());
  Deepseek4HfConfig c;
  c.path = path;
  c.num_hidden_layers = need<int64_t>(j, "num_hidden_layers", path);
  c.num_nextn_predict_layers = opt<int64_t>(j, "num_nextn_predict_layers", 0, path);
  const int64_t all_layers = c.num_hidden_layers;
  if (layers > 0) {
    if (layers > c.num_hidden_layers)
      throw_error("--layers %lld: the config has only %lld layers", static_cast<long long>(layers),
                  static_cast<long long>(c.num_hidden_layers));
    c.num_hidden_layers = layers;
  }
  using F = int64_t Deepseek4HfConfig::*;
  static const std::pair<const char*, F> kRequired[] = {
      {"hidden_size", &Deepseek4HfConfig::hidden_size},
      {"num_attention_heads", &Deepseek4HfConfig::num_attention_heads},
      {"head_dim", &Deepseek4HfConfig::head_dim},
      {"qk_rope_head_dim", &Deepseek4HfConfig::qk_rope_head_dim},
      {"q_lora_rank", &Deepseek4HfConfig::q_lora_rank},
      {"o_groups", &Deepseek4HfConfig::o_groups},
      {"o_lora_rank", &Deepseek4HfConfig::o_lora_rank},
      {"sliding_window", &Deepseek4HfConfig::sliding_window},
      {"hc_mult", &Deepseek4HfConfig::hc_mult},
      {"n_routed_experts", &Deepseek4HfConfig::n_routed_experts},
      {"num_experts_per_tok", &Deepseek4HfConfig::num_experts_per_tok},
      {"moe_intermediate_size", &Deepseek4HfConfig::moe_intermediate_size},
      {"n_shared_experts", &Deepseek4HfConfig::n_shared_experts},
      {"index_n_heads", &Deepseek4HfConfig::index_n_heads},
      {"index_head_dim", &Deepseek4HfConfig::index_head_dim},
      {"index_topk", &Deepseek4HfConfig::index_topk},
  };
  for (const auto& [key, field] : kRequired) c.*field = need<int64_t>(j, key, path);
  c.hc_sinkhorn_iters = opt<int64_t>(j, "hc_sinkhorn_iters", 20, path);
  c.num_hash_layers = std::min(need<int64_t>(j, "num_hash_layers", path), c.num_hidden_layers);
  c.max_position_embeddings = opt<int64_t>(j, "max_position_embeddings", 1048576, path);
  c.vocab_size = opt_id(j, "vocab_size", path);
  c.bos_token_id = opt_id(j, "bos_token_id", path);
  c.eos_token_id = opt_id(j, "eos_token_id", path);
  c.pad_token_id = opt_id(j, "pad_token_id", path);
  c.rms_norm_eps = opt<float>(j, "rms_norm_eps", 1e-6f, path);
  c.rope_theta = opt<float>(j, "rope_theta", 10000.0f, path);
  c.compress_rope_theta = opt<float>(j, "compress_rope_theta", 160000.0f, path);
  c.hc_eps = opt<float>(j, "hc_eps", 1e-6f, path);
  c.routed_scaling_factor = opt<float>(j, "routed_scaling_factor", 1.0f, path);
  c.swiglu_limit = opt<float>(j, "swiglu_limit", 0.0f, path);
  c.norm_topk_prob = opt<bool>(j, "norm_topk_prob", true, path);
  std::vector<int64_t> ratios = need<std::vector<int64_t>>(j, "compress_ratios", path);
  if (static_cast<int64_t>(ratios.size()) < c.num_hidden_layers)
    throw_error("%s: compress_ratios has %zu entries for %lld layers", path.c_str(), ratios.size(),
                static_cast<long long>(c.num_hidden_layers));
  if (static_cast<int64_t>(ratios.size()) > all_layers) c.mtp_compress_ratio = ratios[static_cast<size_t>(all_layers)];
  if (c.mtp_compress_ratio != 0 && c.mtp_compress_ratio != 4 && c.mtp_compress_ratio != 128)
    throw_error("%s: compress_ratios[%lld] (the MTP layer's) holds %lld (0, 4 or 128)", path.c_str(),
                static_cast<long long>(all_layers), static_cast<long long>(c.mtp_compress_ratio));
  ratios.resize(static_cast<size_t>(c.num_hidden_layers));
  for (int64_t r : ratios)
    if (r != 0 && r != 4 && r != 128)
      throw_error("%s: compress_ratios holds %lld (0, 4 or 128)", path.c_str(), static_cast<long long>(r));
  c.compress_ratios = ratios;
  if (c.num_attention_heads <= 0 || c.o_groups <= 0 || c.num_attention_heads % c.o_groups != 0)
    throw_error("%s: o_groups %lld does not divide num_attention_heads %lld", path.c_str(),
                static_cast<long long>(c.o_groups), static_cast<long long>(c.num_attention_heads));
  for (const char* k : {"hidden_size", "head_dim", "q_lora_rank", "o_lora_rank", "hc_mult", "n_routed_experts",
                        "num_experts_per_tok", "moe_intermediate_size"})
    if (j.at(k).get<int64_t>() <= 0) throw_error("%s: key '%s' must be positive", path.c_str(), k);
  // rope_scaling (transformers 4) or rope_parameters (5): llama.cpp writes
  // type, factor and original_max_position_embeddings for linear and yarn.
  const char* rk = j.contains("rope_scaling") ? "rope_scaling" : "rope_parameters";
  if (j.contains(rk) && j.at(rk).is_object()) {
    const Json& r = j.at(rk);
    c.rope_type = r.contains("rope_type") ? opt<std::string>(r, "rope_type", "", path) : opt<std::string>(r, "type", "", path);
    if (c.rope_type == "default") c.rope_type = "";
    if (!c.rope_type.empty() && c.rope_type != "yarn" && c.rope_type != "linear")
      throw_error("%s: %s.type '%s' is not supported (yarn or linear)", path.c_str(), rk, c.rope_type.c_str());
    c.rope_factor = opt<float>(r, "factor", 0.0f, path);
    c.rope_original_ctx = opt<int64_t>(r, "original_max_position_embeddings", 0, path);
    if (c.rope_type == "yarn" && (c.rope_factor <= 0.0f || c.rope_original_ctx <= 0))
      throw_error("%s: %s of type yarn needs factor and original_max_position_embeddings", path.c_str(), rk);
  }
  return c;
}

void deepseek4_model_metadata(const Deepseek4HfConfig& c, int64_t V, uint32_t file_type, const std::string& name,
                              GgufKvList& kv) {
  const int64_t L = c.num_hidden_layers;
  auto key = [](const char* k) { return std::string("deepseek4.") + k; };
  auto u32 = [](int64_t v) { return GgufValue::u32(static_cast<uint32_t>(v)); };
  kv.set("general.architecture", GgufValue::string("deepseek4"));
  kv.set("general.name", GgufValue::string(name));
  kv.set("general.file_type", GgufValue::u32(file_type));
  kv.set(key("vocab_size"), u32(V));
  kv.set(key("context_length"), u32(c.max_position_embeddings));
  kv.set(key("embedding_length"), u32(c.hidden_size));
  kv.set(key("embedding_length_out"), u32(c.hc_mult * c.hidden_size));
  kv.set(key("feed_forward_length"), u32(c.moe_intermediate_size));
  kv.set(key("block_count"), u32(L));
  kv.set(key("attention.head_count"), u32(c.num_attention_heads));
  kv.set(key("attention.head_count_kv"), u32(1));
  kv.set(key("attention.key_length"), u32(c.head_dim));
  kv.set(key("attention.value_length"), u32(c.head_dim));
  kv.set(key("attention.layer_norm_rms_epsilon"), GgufValue::f32(c.rms_norm_eps));
  kv.set(key("rope.freq_base"), GgufValue::f32(c.rope_theta));
  if (!c.rope_type.empty()) {
    kv.set(key("rope.scaling.type"), GgufValue::string(c.rope_type));
    kv.set(key("rope.scaling.factor"), GgufValue::f32(c.rope_factor));
    if (c.rope_type == "yarn")
      kv.set(key("rope.scaling.original_context_length"), u32(c.rope_original_ctx));
  }
  kv.set(key("rope.dimension_count"), u32(c.qk_rope_head_dim));
  kv.set(key("attention.q_lora_rank"), u32(c.q_lora_rank));
  kv.set(key("attention.sliding_window"), u32(c.sliding_window));
  kv.set(key("expert_count"), u32(c.n_routed_experts));
  kv.set(key("expert_used_count"), u32(c.num_experts_per_tok));
  kv.set(key("expert_feed_forward_length"), u32(c.moe_intermediate_size));
  kv.set(key("expert_shared_count"), u32(c.n_shared_experts));
  kv.set(key("expert_weights_scale"), GgufValue::f32(c.routed_scaling_factor));
  kv.set(key("expert_weights_norm"), GgufValue::boolean(c.norm_topk_prob));
  kv.set(key("expert_gating_func"), u32(4));  // sqrt(softplus)
  const std::vector<float> limits(static_cast<size_t>(L), c.swiglu_limit);
  kv.set(key("swiglu_clamp_exp"), GgufValue::array<float>(GgufType::FLOAT32, limits));
  kv.set(key("swiglu_clamp_shexp"), GgufValue::array<float>(GgufType::FLOAT32, limits));
  kv.set(key("attention.indexer.head_count"), u32(c.index_n_heads));
  kv.set(key("attention.indexer.key_length"), u32(c.index_head_dim));
  kv.set(key("attention.indexer.top_k"), u32(c.index_topk));
  kv.set(key("attention.output_group_count"), u32(c.o_groups));
  kv.set(key("attention.output_lora_rank"), u32(c.o_lora_rank));
  kv.set(key("attention.compress_rope_freq_base"), GgufValue::f32(c.compress_rope_theta));
  const std::vector<uint32_t> r32(c.compress_ratios.begin(), c.compress_ratios.end());
  kv.set(key("attention.compress_ratios"), GgufValue::array<uint32_t>(GgufType::UINT32, r32));
  kv.set(key("hyper_connection.count"), u32(c.hc_mult));
  kv.set(key("hyper_connection.sinkhorn_iterations"), u32(c.hc_sinkhorn_iters));
  kv.set(key("hyper_connection.epsilon"), GgufValue::f32(c.hc_eps));
  kv.set(key("hash_layer_count"), u32(c.num_hash_layers));
}

std::vector<LayoutTensor> deepseek4_tensors(const Deepseek4HfConfig& c, int64_t V) {
  const int64_t D = c.hidden_size, H = c.num_attention_heads, d = c.head_dim, G = c.o_groups, R = c.o_lora_rank;
  const int64_t hc = c.hc_mult, E = c.n_routed_experts, K = c.num_experts_per_tok, F = c.moe_intermediate_size;
  const int64_t S = c.n_shared_experts, HI = c.index_n_heads, DI = c.index_head_dim, q_lora = c.q_lora_rank;
  std::vector<LayoutTensor> t;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, LayoutRole role) {
    t.push_back({name, std::move(shape), role});
  };
  const int64_t mix = (2 + hc) * hc;
  add("token_embd.weight", {D, V}, LayoutRole::kEmbed);
  for (int64_t il = 0; il < c.num_hidden_layers; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    const int64_t ratio = c.compress_ratios[static_cast<size_t>(il)], coff = ratio == 4 ? 2 : 1;
    add(b + "attn_norm.weight", {D}, LayoutRole::kNorm);
    add(b + "attn_sinks.weight", {H}, LayoutRole::kBias);
    add(b + "attn_q_a.weight", {D, q_lora}, LayoutRole::kMatrix);
    add(b + "attn_q_a_norm.weight", {q_lora}, LayoutRole::kNorm);
    add(b + "attn_q_b.weight", {q_lora, H * d}, LayoutRole::kMatrix);
    add(b + "attn_kv.weight", {D, d}, LayoutRole::kMatrix);
    add(b + "attn_kv_a_norm.weight", {d}, LayoutRole::kNorm);
    add(b + "attn_output_a.weight", {H * d / G, G * R}, LayoutRole::kMatrix);
    add(b + "attn_output_b.weight", {G * R, D}, LayoutRole::kMatrix);
    for (const char* which : {"hc_attn", "hc_ffn"}) {
      add(b + which + "_fn.weight", {hc * D, mix}, LayoutRole::kMatrix);
      add(b + which + "_base.weight", {mix}, LayoutRole::kBias);
      add(b + which + "_scale.weight", {3}, LayoutRole::kNorm);
    }
    if (ratio != 0) {
      add(b + "attn_compressor_kv.weight", {D, coff * d}, LayoutRole::kMatrix);
      add(b + "attn_compressor_gate.weight", {D, coff * d}, LayoutRole::kMatrix);
      add(b + "attn_compressor_ape.weight", {coff * d, ratio}, LayoutRole::kMatrix);
      add(b + "attn_compressor_norm.weight", {d}, LayoutRole::kNorm);
    }
    if (ratio == 4) {
      add(b + "indexer.proj.weight", {D, HI}, LayoutRole::kMatrix);
      add(b + "indexer.attn_q_b.weight", {q_lora, HI * DI}, LayoutRole::kMatrix);
      add(b + "indexer_compressor_kv.weight", {D, 2 * DI}, LayoutRole::kMatrix);
      add(b + "indexer_compressor_gate.weight", {D, 2 * DI}, LayoutRole::kMatrix);
      add(b + "indexer_compressor_ape.weight", {2 * DI, 4}, LayoutRole::kMatrix);
      add(b + "indexer_compressor_norm.weight", {DI}, LayoutRole::kNorm);
    }
    add(b + "ffn_gate_inp.weight", {D, E}, LayoutRole::kRouter);
    if (il < c.num_hash_layers) add(b + "ffn_gate_tid2eid.weight", {K, V}, LayoutRole::kTable);
    else add(b + "exp_probs_b.bias", {E}, LayoutRole::kBias);
    add(b + "ffn_norm.weight", {D}, LayoutRole::kNorm);
    add(b + "ffn_gate_exps.weight", {D, F, E}, LayoutRole::kMatrix);
    add(b + "ffn_down_exps.weight", {F, D, E}, LayoutRole::kMatrix);
    add(b + "ffn_up_exps.weight", {D, F, E}, LayoutRole::kMatrix);
    if (S > 0) {
      add(b + "ffn_gate_shexp.weight", {D, F * S}, LayoutRole::kMatrix);
      add(b + "ffn_down_shexp.weight", {F * S, D}, LayoutRole::kMatrix);
      add(b + "ffn_up_shexp.weight", {D, F * S}, LayoutRole::kMatrix);
    }
  }
  add("output_hc_fn.weight", {hc * D, hc}, LayoutRole::kMatrix);
  add("output_hc_base.weight", {hc}, LayoutRole::kBias);
  add("output_hc_scale.weight", {1}, LayoutRole::kNorm);
  add("output_norm.weight", {D}, LayoutRole::kNorm);
  add("output.weight", {D, V}, LayoutRole::kMatrix);

  std::vector<std::string> names;
  for (const LayoutTensor& x : t) names.push_back(x.name);
  std::vector<LayoutTensor> ordered;
  for (size_t i : llama_tensor_order(names)) ordered.push_back(t[i]);
  return ordered;
}

namespace {

// The config of the model the companion declares: one layer more, the MTP's.
Deepseek4HfConfig with_mtp_layer(const Deepseek4HfConfig& c) {
  Deepseek4HfConfig m = c;
  m.num_hidden_layers = c.num_hidden_layers + 1;
  m.compress_ratios.push_back(c.mtp_compress_ratio);
  return m;
}

}  // namespace

void deepseek4_mtp_companion_metadata(const Deepseek4HfConfig& c, int64_t V, uint32_t file_type,
                                      const std::string& name, GgufKvList& kv) {
  deepseek4_model_metadata(with_mtp_layer(c), V, file_type, name, kv);
  kv.set("deepseek4.nextn_predict_layers", GgufValue::u32(1));
}

std::vector<LayoutTensor> deepseek4_mtp_companion_tensors(const Deepseek4HfConfig& c, int64_t V) {
  const int64_t D = c.hidden_size;
  const std::string mtp = "blk." + std::to_string(c.num_hidden_layers) + ".";
  std::vector<LayoutTensor> t;
  for (LayoutTensor& x : deepseek4_tensors(with_mtp_layer(c), V))
    if (x.name.rfind("blk.", 0) != 0 || x.name.rfind(mtp, 0) == 0) t.push_back(std::move(x));
  t.push_back({mtp + "nextn.eh_proj.weight", {2 * D, D}, LayoutRole::kMatrix});
  t.push_back({mtp + "nextn.enorm.weight", {D}, LayoutRole::kNorm});
  t.push_back({mtp + "nextn.hnorm.weight", {D}, LayoutRole::kNorm});
  t.push_back({mtp + "nextn.shared_head_norm.weight", {D}, LayoutRole::kNorm});
  return t;
}

}  // namespace moe
