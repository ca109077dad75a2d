// moe-synth for DeepSeek-V4: a deepseek4 GGUF with llama.cpp's keys, tensor
// names and shapes (deepseek4_gguf_layout.h), random contents, from a
// config.json in the release's key names (models/configs/deepseek-v4-*.json).
#include <filesystem>

#include "convert/deepseek4_gguf_layout.h"
#include "convert/synth_writer.h"
#include "core/error.h"
#include "core/output_guard.h"
#include "gguf/gguf_reader.h"

namespace moe {

namespace {

std::string config_path(const std::string& name, const std::string& models_dir) {
  if (name == "v4-flash") return models_dir + "/configs/deepseek-v4-flash.json";
  if (name == "v4-pro") return models_dir + "/configs/deepseek-v4-pro.json";
  if (std::filesystem::is_directory(name)) return name + "/config.json";
  return name;
}

}  // namespace

bool synth_is_deepseek4(const std::string& config) {
  if (config == "v4-flash" || config == "v4-pro") return true;
  return is_deepseek4_config(config_path(config, ""));
}

SynthReport synthesize_deepseek4(const SynthOptions& o) {
  if (o.mtp && o.mtp_out.empty())
    throw_error("--mtp: DeepSeek-V4 keeps its MTP module in a companion GGUF of its own (ik_llama.cpp's layout); "
                "name it with --mtp-companion FILE");
  if (!o.mtp_out.empty()) refuse_same_outputs(o.out, o.mtp_out, "--mtp-companion");
  const std::string path = config_path(o.config, o.models_dir);
  const Deepseek4HfConfig c = read_deepseek4_config(path, o.layers);

  const std::string vocab_path = o.vocab.empty() ? o.models_dir + "/deepseek-v3-vocab.gguf" : o.vocab;
  const GgufFile vocab = GgufFile::open(vocab_path);
  const int64_t V = static_cast<int64_t>(vocab.get_string_array("tokenizer.ggml.tokens").size());

  GgufKvList kv;
  deepseek4_model_metadata(c, V, static_cast<uint32_t>(o.file_type),
                           "synthetic " + std::filesystem::path(path).stem().string(), kv);
  for (const GgufKv& e : vocab.metadata())
    if (e.key.rfind("tokenizer.", 0) == 0) kv.set(e.key, e.value);
  kv.set("general.quantization_version", GgufValue::u32(2));

  PlanModel pm;
  pm.n_layer = static_cast<uint32_t>(c.num_hidden_layers);
  pm.n_expert = static_cast<uint32_t>(c.n_routed_experts);
  pm.n_head = static_cast<uint32_t>(c.num_attention_heads);
  pm.n_head_kv = 1;
  SynthReport r = write_synthetic(o, kv, deepseek4_tensors(c, V), pm, c.hidden_size, c.n_routed_experts);
  if (o.mtp_out.empty()) return r;

  // The companion: the same seed gives its embedding and head the trunk's bytes.
  GgufKvList mkv;
  deepseek4_mtp_companion_metadata(c, V, static_cast<uint32_t>(o.file_type),
                                   "synthetic " + std::filesystem::path(path).stem().string() + " MTP", mkv);
  for (const GgufKv& e : vocab.metadata())
    if (e.key.rfind("tokenizer.", 0) == 0) mkv.set(e.key, e.value);
  mkv.set("general.quantization_version", GgufValue::u32(2));
  SynthOptions mo = o;
  mo.out = o.mtp_out;
  pm.n_layer += 1;
  const SynthReport m = write_synthetic(mo, mkv, deepseek4_mtp_companion_tensors(c, V), pm, c.hidden_size,
                                        c.n_routed_experts);
  r.bytes += m.bytes;
  r.n_tensors += m.n_tensors;
  r.n_params += m.n_params;
  return r;
}

}  // namespace moe
