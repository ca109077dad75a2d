// Hugging Face DeepSeek-V2/V3 checkpoint -> deepseek2 GGUF, streaming: the
// output tensors are planned first (names, types, shapes, in the order
// llama.cpp's converter writes them), then each is produced from its source
// tensors one at a time, so memory holds one source tensor as float32 plus
// its converted bytes (merged experts are written expert by expert).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "convert/deepseek2_gguf_layout.h"
#include "gguf/gguf_set_writer.h"
#include "convert/safetensors.h"
#include "core/ggml_type.h"

namespace moe {

struct ConvertOptions {
  ConvertOutType outtype = ConvertOutType::F32;
  bool keep_mtp = true;    // false: drop layers >= num_hidden_layers (--no-mtp)
  int n_threads = 1;       // converting rows in parallel
  std::string model_name;  // general.name; "" = the checkpoint directory's name, as the converter
  bool progress = true;    // a progress bar when stderr is a terminal
  SplitOptions split;      // --split-max-tensors / --split-max-size: write a gguf-split set
  // DeepSeek-V4: the chat template written when the checkpoint has none
  // (its release has none; llama.cpp's converter adds this one). "" = none.
  std::string deepseek4_template_file;
  // DeepSeek-V4: also write its MTP module (mtp.0.*) to this file, an MTP
  // companion GGUF in ik_llama.cpp's layout (moe -md). "" = skip the module.
  std::string mtp_companion;
};

// How one output tensor is made from the checkpoint.
enum class TensorRecipe {
  Copy,     // one source tensor, same element order
  KB,       // kv_b_proj rows [h][nope part] transposed per head -> attn_k_b {nope, kv_lora, n_head}
  VB,       // kv_b_proj rows [h][v part]                         -> attn_v_b {kv_lora, v, n_head}
  Experts,  // n_expert sources [rows, cols] stacked              -> {cols, rows, n_expert}
};

struct PlannedTensor {
  std::string name;           // GGUF name
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> ne;    // ggml order
  TensorRecipe recipe = TensorRecipe::Copy;
  std::vector<std::string> sources;  // Hugging Face names
};

// The output tensors in write order. Throws moe::Error naming the tensor
// for an unknown name, an unexpected shape, a missing tensor or an
// incomplete set of experts.
std::vector<PlannedTensor> plan_deepseek2_tensors(const SafetensorsCheckpoint& ckpt, const HfConfig& config,
                                                  const ConvertOptions& options);

struct ConvertSummary {
  size_t n_tensors = 0;
  uint64_t tensor_bytes = 0;
  std::vector<std::string> paths;  // the file, or the shards of the set
};

// Converts `hf_dir` into `out_path` (written to a temporary name, renamed at
// the end). Call install_interrupt_handler() first to make SIGINT stop it
// cleanly between pieces.
ConvertSummary convert_hf_checkpoint(const std::string& hf_dir, const std::string& out_path,
                                     const ConvertOptions& options);

// DeepSeek-V4 (config.json architectures DeepseekV4ForCausalLM; called by
// convert_hf_checkpoint): the release's own tensor names, FP8 weights with
// E8M0 block scales, FP4 routed experts; see convert_deepseek4.cpp.
ConvertSummary convert_deepseek4_checkpoint(const std::string& hf_dir, const std::string& out_path,
                                            const ConvertOptions& options);

// general.name for a checkpoint directory: its name, as llama.cpp's converter.
std::string checkpoint_model_name(const std::string& dir);

}  // namespace moe
