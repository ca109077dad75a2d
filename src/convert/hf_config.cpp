#include "convert/hf_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace moe {

namespace {

using nlohmann::json;

// Typed access to config.json keys; every error names the file and the key.
class ConfigReader {
 public:
  ConfigReader(const json& j, const std::string& path) : j_(j), path_(path) {}

  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  int64_t int_req(const char* key) const {
    if (!has(key)) throw_error("%s: missing required key \"%s\"", path_.c_str(), key);
    return int_at(j_.at(key), key);
  }
  std::optional<int64_t> int_opt(const char* key) const {
    if (!has(key)) return std::nullopt;
    return int_at(j_.at(key), key);
  }
  std::optional<double> num_opt(const char* key) const {
    if (!has(key)) return std::nullopt;
    return num_at(j_.at(key), key);
  }
  std::optional<std::string> str_opt(const char* key) const {
    if (!has(key)) return std::nullopt;
    const json& v = j_.at(key);
    if (!v.is_string()) throw_error("%s: key \"%s\" must be a string, found %s", path_.c_str(), key, v.type_name());
    return v.get<std::string>();
  }
  std::optional<bool> bool_opt(const char* key) const {
    if (!has(key)) return std::nullopt;
    const json& v = j_.at(key);
    if (!v.is_boolean()) throw_error("%s: key \"%s\" must be true or false, found %s", path_.c_str(), key, v.dump().c_str());
    return v.get<bool>();
  }

  int64_t int_at(const json& v, const std::string& key) const {
    // Integral floats (e.g. 4096.0) are accepted, as Python's json would give them to the converter.
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
    }
    throw_error("%s: key \"%s\" must be an integer, found %s", path_.c_str(), key.c_str(), v.dump().c_str());
  }
  double num_at(const json& v, const std::string& key) const {
    if (!v.is_number()) throw_error("%s: key \"%s\" must be a number, found %s", path_.c_str(), key.c_str(), v.dump().c_str());
    return v.get<double>();
  }

 private:
  const json& j_;
  const std::string& path_;
};

void check_positive(const std::string& path, const char* key, int64_t v) {
  if (v <= 0) throw_error("%s: key \"%s\" must be positive, found %lld", path.c_str(), key, static_cast<long long>(v));
}

HfRopeScaling parse_rope_scaling(const json& rs, const std::string& path) {
  if (!rs.is_object()) throw_error("%s: key \"rope_scaling\" must be an object, found %s", path.c_str(), rs.type_name());
  const ConfigReader r(rs, path);
  HfRopeScaling s;
  // Transformers names it rope_type; older configs (DeepSeek's) say type.
  s.type = r.str_opt("rope_type").value_or(r.str_opt("type").value_or(""));
  s.factor = r.num_opt("factor");
  s.original_max_position_embeddings = r.int_opt("original_max_position_embeddings");
  s.beta_fast = r.num_opt("beta_fast");
  s.beta_slow = r.num_opt("beta_slow");
  s.extrapolation_factor = r.num_opt("extrapolation_factor");
  s.attention_factor = r.has("attention_factor") ? r.num_opt("attention_factor") : r.num_opt("attn_factor");
  s.mscale_all_dim = r.num_opt("mscale_all_dim");
  if (s.type == "yarn" && s.factor && !s.original_max_position_embeddings)
    throw_error("%s: rope_scaling of type yarn needs \"original_max_position_embeddings\"", path.c_str());
  return s;
}

}  // namespace

HfConfig parse_hf_config(const std::string& text, const std::string& path) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw_error("%s: not valid JSON: %s", path.c_str(), e.what());
  }
  if (!j.is_object()) throw_error("%s: expected a JSON object at the top level, found %s", path.c_str(), j.type_name());
  const ConfigReader r(j, path);
  HfConfig c;
  c.path = path;

  if (!r.has("architectures") || !j.at("architectures").is_array() || j.at("architectures").empty() ||
      !j.at("architectures")[0].is_string())
    throw_error("%s: key \"architectures\" must be a non-empty array of strings", path.c_str());
  c.architecture = j.at("architectures")[0].get<std::string>();
  // GLM-4.7-Flash shares the DeepSeek-V3 layout (MLA, experts with a
  // selection bias); llama.cpp's converter writes it as deepseek2 too.
  if (c.architecture != "DeepseekV2ForCausalLM" && c.architecture != "DeepseekV3ForCausalLM" &&
      c.architecture != "DeepseekV32ForCausalLM" && c.architecture != "Glm4MoeLiteForCausalLM")
    throw_error("%s: unsupported architecture \"%s\" (supported: DeepseekV2ForCausalLM, DeepseekV3ForCausalLM, "
                "DeepseekV32ForCausalLM, Glm4MoeLiteForCausalLM)",
                path.c_str(), c.architecture.c_str());
  if (c.architecture == "DeepseekV32ForCausalLM") {
    c.index_n_heads = r.int_req("index_n_heads");
    c.index_head_dim = r.int_req("index_head_dim");
    c.index_topk = r.int_req("index_topk");
  }

  c.vocab_size = r.int_req("vocab_size");
  c.hidden_size = r.int_req("hidden_size");
  c.intermediate_size = r.int_req("intermediate_size");
  c.num_hidden_layers = r.int_req("num_hidden_layers");
  c.num_attention_heads = r.int_req("num_attention_heads");
  c.num_key_value_heads = r.int_opt("num_key_value_heads").value_or(c.num_attention_heads);
  c.n_routed_experts = r.int_opt("n_routed_experts");
  // The converter takes moe_intermediate_size, else intermediate_size.
  c.moe_intermediate_size = r.int_opt("moe_intermediate_size").value_or(c.intermediate_size);
  c.n_shared_experts = r.int_opt("n_shared_experts").value_or(0);
  c.num_experts_per_tok = r.int_opt("num_experts_per_tok");
  c.routed_scaling_factor = r.num_opt("routed_scaling_factor");
  c.kv_lora_rank = r.int_opt("kv_lora_rank").value_or(512);
  c.q_lora_rank = r.int_opt("q_lora_rank");
  c.qk_rope_head_dim = r.int_req("qk_rope_head_dim");
  c.qk_nope_head_dim = r.int_req("qk_nope_head_dim");
  c.v_head_dim = r.int_req("v_head_dim");
  c.head_dim = r.int_opt("head_dim");
  c.n_group = r.int_opt("n_group");
  c.topk_group = r.int_opt("topk_group");
  c.topk_method = r.str_opt("topk_method");
  // Absent: all layers dense without experts, none with them (as the converter).
  c.first_k_dense_replace = r.int_opt("first_k_dense_replace").value_or(c.n_routed_experts ? 0 : c.num_hidden_layers);
  c.norm_topk_prob = r.bool_opt("norm_topk_prob").value_or(false);
  c.scoring_func = r.str_opt("scoring_func");
  c.max_position_embeddings = r.int_opt("max_position_embeddings");
  c.rms_norm_eps = r.num_opt("rms_norm_eps").value_or(1e-6);
  c.rope_theta = r.num_opt("rope_theta");
  c.tie_word_embeddings = r.bool_opt("tie_word_embeddings").value_or(false);
  c.bos_token_id = r.int_opt("bos_token_id");
  c.eos_token_id = r.int_opt("eos_token_id");
  c.pad_token_id = r.int_opt("pad_token_id");
  c.unk_token_id = r.int_opt("unk_token_id");
  c.num_nextn_predict_layers = r.int_opt("num_nextn_predict_layers").value_or(0);
  if (r.has("rope_scaling")) c.rope_scaling = parse_rope_scaling(j.at("rope_scaling"), path);

  if (r.has("quantization_config")) {
    const json& q = j.at("quantization_config");
    if (!q.is_object()) throw_error("%s: key \"quantization_config\" must be an object", path.c_str());
    const ConfigReader qr(q, path);
    c.quant_method = qr.str_opt("quant_method");
    if (c.quant_method && *c.quant_method != "fp8")
      throw_error("%s: quantization_config.quant_method \"%s\" is not supported (only fp8)", path.c_str(),
                  c.quant_method->c_str());
    if (qr.has("weight_block_size")) {
      const json& b = q.at("weight_block_size");
      if (!b.is_array() || b.size() != 2)
        throw_error("%s: quantization_config.weight_block_size must be [rows, cols], found %s", path.c_str(),
                    b.dump().c_str());
      c.fp8_block_rows = qr.int_at(b[0], "quantization_config.weight_block_size[0]");
      c.fp8_block_cols = qr.int_at(b[1], "quantization_config.weight_block_size[1]");
      check_positive(path, "quantization_config.weight_block_size", std::min(c.fp8_block_rows, c.fp8_block_cols));
    }
  }

  check_positive(path, "vocab_size", c.vocab_size);
  check_positive(path, "hidden_size", c.hidden_size);
  check_positive(path, "intermediate_size", c.intermediate_size);
  check_positive(path, "moe_intermediate_size", c.moe_intermediate_size);
  check_positive(path, "num_hidden_layers", c.num_hidden_layers);
  check_positive(path, "num_attention_heads", c.num_attention_heads);
  check_positive(path, "num_key_value_heads", c.num_key_value_heads);
  check_positive(path, "kv_lora_rank", c.kv_lora_rank);
  check_positive(path, "qk_rope_head_dim", c.qk_rope_head_dim);
  check_positive(path, "qk_nope_head_dim", c.qk_nope_head_dim);
  check_positive(path, "v_head_dim", c.v_head_dim);
  if (c.q_lora_rank) check_positive(path, "q_lora_rank", *c.q_lora_rank);
  if (c.n_routed_experts) {
    check_positive(path, "n_routed_experts", *c.n_routed_experts);
    if (!c.num_experts_per_tok) throw_error("%s: missing required key \"num_experts_per_tok\"", path.c_str());
    if (*c.num_experts_per_tok <= 0 || *c.num_experts_per_tok > *c.n_routed_experts)
      throw_error("%s: key \"num_experts_per_tok\" must be in 1..n_routed_experts (%lld), found %lld", path.c_str(),
                  static_cast<long long>(*c.n_routed_experts), static_cast<long long>(*c.num_experts_per_tok));
  }
  if (c.n_shared_experts < 0) throw_error("%s: key \"n_shared_experts\" must not be negative", path.c_str());
  if (c.first_k_dense_replace < 0 || c.first_k_dense_replace > c.num_hidden_layers)
    throw_error("%s: key \"first_k_dense_replace\" must be in 0..num_hidden_layers (%lld), found %lld", path.c_str(),
                static_cast<long long>(c.num_hidden_layers), static_cast<long long>(c.first_k_dense_replace));
  if (c.num_nextn_predict_layers < 0)
    throw_error("%s: key \"num_nextn_predict_layers\" must not be negative", path.c_str());
  if (c.scoring_func && *c.scoring_func != "sigmoid" && *c.scoring_func != "softmax")
    throw_error("%s: key \"scoring_func\" must be \"softmax\" or \"sigmoid\", found \"%s\"", path.c_str(),
                c.scoring_func->c_str());
  return c;
}

HfConfig load_hf_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_error("%s: cannot open (is %s a Hugging Face checkpoint directory?)", path.c_str(), dir.c_str());
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_hf_config(ss.str(), path);
}

}  // namespace moe
