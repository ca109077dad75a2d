// Which ggml type each tensor gets when a model is quantized to a file type:
// the same choices llama.cpp's llama-quantize makes (src/llama-quant.cpp,
// llama_tensor_get_type), with or without an importance matrix.
//
// The plan needs only tensor names, shapes and source types plus a few
// hyper-parameters, never tensor data, so a tool can size a quantized file
// before any weight exists (moe-synth) as well as quantize one (moe-quantize).
//
// What it reproduces:
//   - which tensors are never quantized (1-D tensors, names not ending in
//     "weight", norms, the ffn_gate_inp router, ...);
//   - the per-file-type mixtures (Q4_K_M giving attn_v-like tensors and
//     some ffn_down layers Q6_K, output.weight Q6_K, ...), including
//     llama.cpp's running counters over attn_v / attn_kv_b tensors, which
//     depend on the order it visits tensors (llama_tensor_order below);
//   - the fallback when a row is not a whole number of blocks (Q4_K -> Q5_0,
//     Q6_K -> Q8_0, ..., then F16);
//   - --pure (no mixture: every quantizable tensor gets the default type,
//     output.weight and token_embd included) and --tensor-type REGEX=TYPE
//     overrides (first matching pattern wins, searched anywhere in the name).
// The TQ* and Q1_0/Q2_0 file types parse, but plan_tensor_types refuses
// them (moe.cpp has no quantizers for those types).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ggml_type.h"

namespace moe {

class GgufFile;

// llama.cpp's LLAMA_FTYPE ids (include/llama.h), written as general.file_type.
enum class FileType : uint32_t {
  ALL_F32 = 0,
  MOSTLY_F16 = 1,
  MOSTLY_Q4_0 = 2,
  MOSTLY_Q4_1 = 3,
  MOSTLY_Q8_0 = 7,
  MOSTLY_Q5_0 = 8,
  MOSTLY_Q5_1 = 9,
  MOSTLY_Q2_K = 10,
  MOSTLY_Q3_K_S = 11,
  MOSTLY_Q3_K_M = 12,
  MOSTLY_Q3_K_L = 13,
  MOSTLY_Q4_K_S = 14,
  MOSTLY_Q4_K_M = 15,
  MOSTLY_Q5_K_S = 16,
  MOSTLY_Q5_K_M = 17,
  MOSTLY_Q6_K = 18,
  MOSTLY_IQ2_XXS = 19,
  MOSTLY_IQ2_XS = 20,
  MOSTLY_Q2_K_S = 21,
  MOSTLY_IQ3_XS = 22,
  MOSTLY_IQ3_XXS = 23,
  MOSTLY_IQ1_S = 24,
  MOSTLY_IQ4_NL = 25,
  MOSTLY_IQ3_S = 26,
  MOSTLY_IQ3_M = 27,
  MOSTLY_IQ2_S = 28,
  MOSTLY_IQ2_M = 29,
  MOSTLY_IQ4_XS = 30,
  MOSTLY_IQ1_M = 31,
  MOSTLY_BF16 = 32,
  MOSTLY_TQ1_0 = 36,
  MOSTLY_TQ2_0 = 37,
  MOSTLY_MXFP4_MOE = 38,
  MOSTLY_Q1_0 = 40,
  MOSTLY_Q2_0 = 41,
};

// The name llama-quantize prints for a file type ("Q4_K_M", "F16").
const char* file_type_name(FileType ft);

// Parses a file type as llama-quantize does: a name from its table,
// case-insensitively ("q4_k_m", "Q4_K" = Q4_K_M), or the numeric id ("15").
// nullopt when neither matches.
std::optional<FileType> parse_file_type(std::string_view s);

// The type most tensors get (llama_ftype_get_default_type): Q4_K for Q4_K_M.
GgmlType file_type_default_tensor_type(FileType ft);

// True when plan_tensor_types and quantize_gguf_file can produce this file type.
bool file_type_supported(FileType ft);
// tensor_requires_imatrix: the very-low-bit types (iq1_*, iq2_*, iq3_xxs)
// and Q2_K in a Q2_K_S file, except the token embeddings and output.weight,
// which llama-imatrix never sees as a matmul input.
bool type_requires_imatrix(std::string_view name, GgmlType type, FileType ft);
// "F16, BF16, Q8_0, ..." for error messages.
std::string supported_file_type_names();

// The hyper-parameters the rules read (llama-quant.cpp's qs.model.hparams).
struct PlanModel {
  std::string arch = "deepseek2";  // general.architecture
  uint32_t n_layer = 0;            // {arch}.block_count, MTP layers included
  uint32_t n_expert = 0;           // {arch}.expert_count (0 for dense models)
  uint32_t n_head = 0;             // {arch}.attention.head_count (layer 0)
  uint32_t n_head_kv = 0;          // {arch}.attention.head_count_kv (layer 0; = n_head when absent)
};

// Reads PlanModel from a GGUF file's metadata; throws naming the missing key.
PlanModel plan_model_from_gguf(const GgufFile& f);

struct PlanTensor {
  std::string name;
  std::vector<int64_t> shape;  // ggml order: shape[0] is the row length
  GgmlType type = GgmlType::F32;
};

// --tensor-type REGEX=TYPE. llama-quantize lowercases the pattern and
// matches it with std::regex_search (ECMAScript) against the tensor name.
struct TypeOverride {
  std::string pattern;
  GgmlType type = GgmlType::F32;
};
// Parses "REGEX=TYPE" (type name as ggml prints it, any case); throws with
// the reason (no '=', empty pattern, unknown type, a type moe.cpp cannot
// quantize to; with any_computable, one it cannot compute with: moe-synth
// writes random blocks of types it has no quantizer for).
TypeOverride parse_type_override(std::string_view arg, bool any_computable = false);

struct PlanOptions {
  FileType file_type = FileType::MOSTLY_Q8_0;
  bool pure = false;                    // --pure
  std::vector<TypeOverride> overrides;  // --tensor-type, first match wins
  bool has_imatrix = false;             // --imatrix: a few mixtures differ with one
};

struct QuantPlan {
  std::vector<GgmlType> types;      // one per input tensor, in input order
  std::vector<bool> fell_back;      // the row did not fit the chosen type
  std::vector<bool> requires_imatrix;  // llama.cpp refuses it without importance data
  int n_fallback = 0;
};

// The type each tensor gets. Tensors may be given in any order; the
// counting rules run in llama_tensor_order. Throws moe::Error for an
// unsupported file type, a bad override pattern, or a tensor whose layer
// number the rules need but cannot read.
QuantPlan plan_tensor_types(const PlanModel& model, const std::vector<PlanTensor>& tensors,
                            const PlanOptions& opts);

// Whether llama-quantize may change this tensor's type at all
// (tensor_allows_quantization).
bool tensor_allows_quantization(std::string_view name, const std::vector<int64_t>& shape);

// The order llama-quantize writes tensors in: names without a "blk.N."
// prefix first, then by layer number, each group by name (the loader's
// weights_map ordering). Returns indices into `names`.
std::vector<size_t> llama_tensor_order(const std::vector<std::string>& names);

// The shape as gguf writes it: trailing dimensions of 1 dropped (at least one kept).
std::vector<int64_t> gguf_trimmed_shape(const std::vector<int64_t>& shape);

}  // namespace moe
