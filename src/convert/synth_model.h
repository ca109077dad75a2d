// moe-synth's model maker: a deepseek2 GGUF of any DeepSeek shape with
// random weights, for measuring speed and placement without real weights.
//
// Tensor names, shapes, order and metadata are the converter's
// (deepseek2_gguf_layout.h); tensor types are llama-quantize's choices for
// the file type (quantize_plan.h). Quantizing billions of random floats
// would take longer than the benchmark it serves, so each tensor's rows are
// drawn from a small pool of properly quantized random rows (per row length
// and type), picked by a hash of (seed, tensor, row): the bytes are valid
// blocks with realistic scales, the file is deterministic by seed, and a
// V2-Lite-sized file is written at disk speed.
#pragma once

#include <cstdint>
#include <string>

#include "convert/quantize_plan.h"

namespace moe {

struct SynthOptions {
  std::string config;      // path to a config.json, or a built-in name (v2-lite, v2, v3, v3.2, ...)
  std::string models_dir;  // where built-in configs and the vocabulary live
  std::string vocab;       // GGUF with the tokenizer; default models_dir/deepseek-v3-vocab.gguf
  std::string out;
  FileType file_type = FileType::MOSTLY_Q4_K_M;
  int64_t layers = 0;      // 0: the config's num_hidden_layers
  uint64_t seed = 1;
  bool mtp = false;        // write an MTP module (layer num_hidden_layers, blk.N.nextn.*)
  std::string mtp_out;     // DeepSeek-V4: where its MTP module goes, a companion GGUF of its own
  double hot_zipf = 0.0;   // > 0: expert popularity follows Zipf(s) (see synth_model.cpp)
  std::vector<TypeOverride> overrides;  // --tensor-type REGEX=TYPE (IQ types: random blocks)
  int threads = 1;
  bool progress = true;
};

struct SynthReport {
  uint64_t bytes = 0;
  int64_t n_tensors = 0;
  int64_t n_params = 0;
};

// Writes the file (temporary name, renamed when complete). Throws moe::Error.
SynthReport synthesize_model(const SynthOptions& o);

// "v2-lite" -> models_dir/configs/deepseek-v2-lite.json; a path is returned as is.
std::string synth_config_path(const std::string& name_or_path, const std::string& models_dir);

}  // namespace moe
