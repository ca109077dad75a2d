// How llama.cpp's converter (convert_hf_to_gguf.py, class DeepseekV2Model,
// with gguf-py's constants.py and tensor_mapping.py) lays a DeepSeek-V2/V3
// Hugging Face checkpoint out as a `deepseek2` GGUF: the metadata keys in the
// order it writes them, the GGUF name of each Hugging Face tensor, and the
// storage type it picks per tensor for each --outtype.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "convert/hf_config.h"
#include "core/ggml_type.h"
#include "gguf/gguf_value.h"

namespace moe {

enum class ConvertOutType { F32, F16, BF16, Q8_0 };

// "f32", "f16", "bf16", "q8_0"; nullopt otherwise.
std::optional<ConvertOutType> convert_outtype_from_name(const std::string& name);
const char* convert_outtype_name(ConvertOutType t);
// llama_ftype written as general.file_type: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32.
uint32_t convert_file_type(ConvertOutType t);

// Metadata keys in write order. set() replaces a value where it already is,
// as gguf-py's writer does when a key is added twice (expert_count is).
class GgufKvList {
 public:
  void set(const std::string& key, GgufValue value);
  const std::vector<std::pair<std::string, GgufValue>>& items() const { return items_; }
  const GgufValue* find(const std::string& key) const;

 private:
  std::vector<std::pair<std::string, GgufValue>> items_;
};

struct Deepseek2LayoutOptions {
  ConvertOutType outtype = ConvertOutType::F32;
  bool keep_mtp = true;    // MTP (nextn) layers past num_hidden_layers
  std::string model_name;  // general.name
};

// Layers written: the trunk, plus the MTP layers when kept.
int64_t deepseek2_block_count(const HfConfig& c, const Deepseek2LayoutOptions& o);

// Everything before the tokenizer keys: general.*, then deepseek2.* in the
// converter's order, then general.quantization_version.
void deepseek2_model_metadata(const HfConfig& c, const Deepseek2LayoutOptions& o, GgufKvList& kv);

// The GGUF name of a Hugging Face tensor that maps one-to-one (not the
// merged experts nor the kv_b_proj halves); nullopt when unknown. Layers at
// or past num_hidden_layers are MTP layers: their eh_proj, enorm, hnorm,
// embed_tokens and shared_head.{head,norm} go under blk.N.nextn.*.
std::optional<std::string> deepseek2_tensor_name(const std::string& hf_name, int64_t num_hidden_layers);

// The storage type the converter picks for a tensor of `n_dims` dimensions
// whose rows are `ne0` long: F32 for 1-D tensors, norms, the router
// (ffn_gate_inp) and anything not named *.weight (exp_probs_b.bias);
// otherwise the outtype, except that Q8_0 falls back to F16 for rows that
// are not whole 32-element blocks (gguf-py's QuantError fallback).
GgmlType deepseek2_tensor_type(const std::string& gguf_name, size_t n_dims, int64_t ne0, ConvertOutType outtype);
// The outtype's storage type for a matrix whose rows are `ne0` long (the
// rule above, without the name-based F32 cases).
GgmlType outtype_matrix_type(ConvertOutType outtype, int64_t ne0);

}  // namespace moe
