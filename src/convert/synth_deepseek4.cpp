// moe-synth for DeepSeek-V4: a deepseek4 GGUF with llama.cpp's keys, tensor
// names and shapes (models/deepseek4.cpp's loader), random contents, from a
// config.json in the release's key names (models/configs/deepseek-v4-*.json).
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "convert/synth_writer.h"
#include "core/error.h"
#include "gguf/gguf_reader.h"

namespace moe {

namespace {

using Json = nlohmann::json;

std::string config_path(const std::string& name, const std::string& models_dir) {
  if (name == "v4-flash") return models_dir + "/configs/deepseek-v4-flash.json";
  if (name == "v4-pro") return models_dir + "/configs/deepseek-v4-pro.json";
  if (std::filesystem::is_directory(name)) return name + "/config.json";
  return name;
}

Json read_config(const std::string& path) {
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

}  // namespace

bool synth_is_deepseek4(const std::string& config) {
  if (config == "v4-flash" || config == "v4-pro") return true;
  const std::string path = config_path(config, "");
  if (!std::filesystem::is_regular_file(path)) return false;
  std::ifstream f(path);
  const Json c = Json::parse(f, nullptr, /*allow_exceptions=*/false);
  if (!c.is_object() || !c.contains("architectures") || !c["architectures"].is_array()) return false;
  for (const Json& a : c["architectures"])
    if (a.is_string() && a.get<std::string>() == "DeepseekV4ForCausalLM") return true;
  return false;
}

SynthReport synthesize_deepseek4(const SynthOptions& o) {
  if (o.mtp) throw_error("--mtp: moe-synth writes no MTP module for DeepSeek-V4 (llama.cpp's converter keeps it in a file of its own)");
  const std::string path = config_path(o.config, o.models_dir);
  const Json c = read_config(path);
  int64_t L = need<int64_t>(c, "num_hidden_layers", path);
  if (o.layers > 0) {
    if (o.layers > L)
      throw_error("--layers %lld: the config has only %lld layers", static_cast<long long>(o.layers), static_cast<long long>(L));
    L = o.layers;
  }
  const int64_t D = need<int64_t>(c, "hidden_size", path), H = need<int64_t>(c, "num_attention_heads", path);
  const int64_t d = need<int64_t>(c, "head_dim", path), rope = need<int64_t>(c, "qk_rope_head_dim", path);
  const int64_t q_lora = need<int64_t>(c, "q_lora_rank", path), G = need<int64_t>(c, "o_groups", path);
  const int64_t R = need<int64_t>(c, "o_lora_rank", path), hc = need<int64_t>(c, "hc_mult", path);
  const int64_t E = need<int64_t>(c, "n_routed_experts", path), K = need<int64_t>(c, "num_experts_per_tok", path);
  const int64_t F = need<int64_t>(c, "moe_intermediate_size", path), S = need<int64_t>(c, "n_shared_experts", path);
  const int64_t HI = need<int64_t>(c, "index_n_heads", path), DI = need<int64_t>(c, "index_head_dim", path);
  const int64_t hash = std::min<int64_t>(need<int64_t>(c, "num_hash_layers", path), L);
  std::vector<int64_t> ratios = need<std::vector<int64_t>>(c, "compress_ratios", path);
  if (static_cast<int64_t>(ratios.size()) < L)
    throw_error("%s: compress_ratios has %zu entries for %lld layers", path.c_str(), ratios.size(), static_cast<long long>(L));
  ratios.resize(static_cast<size_t>(L));
  for (int64_t r : ratios)
    if (r != 0 && r != 4 && r != 128) throw_error("%s: compress_ratios holds %lld (0, 4 or 128)", path.c_str(), static_cast<long long>(r));
  if (H % G != 0) throw_error("%s: o_groups %lld does not divide num_attention_heads %lld", path.c_str(), static_cast<long long>(G),
                              static_cast<long long>(H));

  const std::string vocab_path = o.vocab.empty() ? o.models_dir + "/deepseek-v3-vocab.gguf" : o.vocab;
  const GgufFile vocab = GgufFile::open(vocab_path);
  const int64_t V = static_cast<int64_t>(vocab.get_string_array("tokenizer.ggml.tokens").size());

  // The keys llama.cpp's converter writes (conversion/deepseek.py).
  GgufKvList kv;
  auto key = [](const char* k) { return std::string("deepseek4.") + k; };
  auto u32 = [](int64_t v) { return GgufValue::u32(static_cast<uint32_t>(v)); };
  kv.set("general.architecture", GgufValue::string("deepseek4"));
  kv.set("general.name", GgufValue::string("synthetic " + std::filesystem::path(path).stem().string()));
  kv.set("general.file_type", GgufValue::u32(static_cast<uint32_t>(o.file_type)));
  kv.set(key("vocab_size"), u32(V));
  kv.set(key("context_length"), u32(c.value("max_position_embeddings", 1048576)));
  kv.set(key("embedding_length"), u32(D));
  kv.set(key("embedding_length_out"), u32(hc * D));
  kv.set(key("feed_forward_length"), u32(F));
  kv.set(key("block_count"), u32(L));
  kv.set(key("attention.head_count"), u32(H));
  kv.set(key("attention.head_count_kv"), u32(1));
  kv.set(key("attention.key_length"), u32(d));
  kv.set(key("attention.value_length"), u32(d));
  kv.set(key("attention.layer_norm_rms_epsilon"), GgufValue::f32(c.value("rms_norm_eps", 1e-6f)));
  kv.set(key("rope.freq_base"), GgufValue::f32(c.value("rope_theta", 10000.0f)));
  kv.set(key("rope.dimension_count"), u32(rope));
  kv.set(key("attention.q_lora_rank"), u32(q_lora));
  kv.set(key("attention.sliding_window"), u32(need<int64_t>(c, "sliding_window", path)));
  kv.set(key("expert_count"), u32(E));
  kv.set(key("expert_used_count"), u32(K));
  kv.set(key("expert_feed_forward_length"), u32(F));
  kv.set(key("expert_shared_count"), u32(S));
  kv.set(key("expert_weights_scale"), GgufValue::f32(c.value("routed_scaling_factor", 1.0f)));
  kv.set(key("expert_weights_norm"), GgufValue::boolean(c.value("norm_topk_prob", true)));
  kv.set(key("expert_gating_func"), u32(4));  // sqrt(softplus)
  const std::vector<float> limits(static_cast<size_t>(L), c.value("swiglu_limit", 0.0f));
  kv.set(key("swiglu_clamp_exp"), GgufValue::array<float>(GgufType::FLOAT32, limits));
  kv.set(key("swiglu_clamp_shexp"), GgufValue::array<float>(GgufType::FLOAT32, limits));
  kv.set(key("attention.indexer.head_count"), u32(HI));
  kv.set(key("attention.indexer.key_length"), u32(DI));
  kv.set(key("attention.indexer.top_k"), u32(need<int64_t>(c, "index_topk", path)));
  kv.set(key("attention.output_group_count"), u32(G));
  kv.set(key("attention.output_lora_rank"), u32(R));
  kv.set(key("attention.compress_rope_freq_base"), GgufValue::f32(c.value("compress_rope_theta", 160000.0f)));
  std::vector<uint32_t> r32(ratios.begin(), ratios.end());
  kv.set(key("attention.compress_ratios"), GgufValue::array<uint32_t>(GgufType::UINT32, r32));
  kv.set(key("hyper_connection.count"), u32(hc));
  kv.set(key("hyper_connection.sinkhorn_iterations"), u32(c.value("hc_sinkhorn_iters", 20)));
  kv.set(key("hyper_connection.epsilon"), GgufValue::f32(c.value("hc_eps", 1e-6f)));
  kv.set(key("hash_layer_count"), u32(hash));
  for (const GgufKv& e : vocab.metadata())
    if (e.key.rfind("tokenizer.", 0) == 0) kv.set(e.key, e.value);
  kv.set("general.quantization_version", GgufValue::u32(2));

  // The tensors of models/deepseek4_weights.cpp, shapes in ggml order.
  std::vector<SynthTensor> t;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, SynthRole role) { t.push_back({name, std::move(shape), role}); };
  const int64_t mix = (2 + hc) * hc;
  add("token_embd.weight", {D, V}, SynthRole::kEmbed);
  for (int64_t il = 0; il < L; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    const int64_t ratio = ratios[static_cast<size_t>(il)], coff = ratio == 4 ? 2 : 1;
    add(b + "attn_norm.weight", {D}, SynthRole::kNorm);
    add(b + "attn_sinks.weight", {H}, SynthRole::kBias);
    add(b + "attn_q_a.weight", {D, q_lora}, SynthRole::kMatrix);
    add(b + "attn_q_a_norm.weight", {q_lora}, SynthRole::kNorm);
    add(b + "attn_q_b.weight", {q_lora, H * d}, SynthRole::kMatrix);
    add(b + "attn_kv.weight", {D, d}, SynthRole::kMatrix);
    add(b + "attn_kv_a_norm.weight", {d}, SynthRole::kNorm);
    add(b + "attn_output_a.weight", {H * d / G, G * R}, SynthRole::kMatrix);
    add(b + "attn_output_b.weight", {G * R, D}, SynthRole::kMatrix);
    for (const char* which : {"hc_attn", "hc_ffn"}) {
      add(b + which + "_fn.weight", {hc * D, mix}, SynthRole::kMatrix);
      add(b + which + "_base.weight", {mix}, SynthRole::kBias);
      add(b + which + "_scale.weight", {3}, SynthRole::kNorm);
    }
    if (ratio != 0) {
      add(b + "attn_compressor_kv.weight", {D, coff * d}, SynthRole::kMatrix);
      add(b + "attn_compressor_gate.weight", {D, coff * d}, SynthRole::kMatrix);
      add(b + "attn_compressor_ape.weight", {coff * d, ratio}, SynthRole::kMatrix);
      add(b + "attn_compressor_norm.weight", {d}, SynthRole::kNorm);
    }
    if (ratio == 4) {
      add(b + "indexer.proj.weight", {D, HI}, SynthRole::kMatrix);
      add(b + "indexer.attn_q_b.weight", {q_lora, HI * DI}, SynthRole::kMatrix);
      add(b + "indexer_compressor_kv.weight", {D, 2 * DI}, SynthRole::kMatrix);
      add(b + "indexer_compressor_gate.weight", {D, 2 * DI}, SynthRole::kMatrix);
      add(b + "indexer_compressor_ape.weight", {2 * DI, 4}, SynthRole::kMatrix);
      add(b + "indexer_compressor_norm.weight", {DI}, SynthRole::kNorm);
    }
    add(b + "ffn_gate_inp.weight", {D, E}, SynthRole::kRouter);
    if (il < hash) add(b + "ffn_gate_tid2eid.weight", {K, V}, SynthRole::kTable);
    else add(b + "exp_probs_b.bias", {E}, SynthRole::kBias);
    add(b + "ffn_norm.weight", {D}, SynthRole::kNorm);
    add(b + "ffn_gate_exps.weight", {D, F, E}, SynthRole::kMatrix);
    add(b + "ffn_down_exps.weight", {F, D, E}, SynthRole::kMatrix);
    add(b + "ffn_up_exps.weight", {D, F, E}, SynthRole::kMatrix);
    if (S > 0) {
      add(b + "ffn_gate_shexp.weight", {D, F * S}, SynthRole::kMatrix);
      add(b + "ffn_down_shexp.weight", {F * S, D}, SynthRole::kMatrix);
      add(b + "ffn_up_shexp.weight", {D, F * S}, SynthRole::kMatrix);
    }
  }
  add("output_hc_fn.weight", {hc * D, hc}, SynthRole::kMatrix);
  add("output_hc_base.weight", {hc}, SynthRole::kBias);
  add("output_hc_scale.weight", {1}, SynthRole::kNorm);
  add("output_norm.weight", {D}, SynthRole::kNorm);
  add("output.weight", {D, V}, SynthRole::kMatrix);

  std::vector<SynthTensor> ordered;
  std::vector<std::string> names;
  for (const SynthTensor& x : t) names.push_back(x.name);
  for (size_t i : llama_tensor_order(names)) ordered.push_back(t[i]);
  PlanModel pm;
  pm.n_layer = static_cast<uint32_t>(L);
  pm.n_expert = static_cast<uint32_t>(E);
  pm.n_head = static_cast<uint32_t>(H);
  pm.n_head_kv = 1;
  return write_synthetic(o, kv, ordered, pm, D, E);
}

}  // namespace moe
