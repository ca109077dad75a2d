// The ggml tensor types, with the ids and block geometry llama.cpp writes
// into GGUF files. This table is what the GGUF reader validates tensor
// sizes against; the block layouts and their arithmetic live in src/quant.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace moe {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  // 4, 5: Q4_2, Q4_3, removed from ggml
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  // 31..33: Q4_0_4_4, Q4_0_4_8, Q4_0_8_8, no longer allowed in files
  TQ1_0 = 34,
  TQ2_0 = 35,
  // 36..38: IQ4_NL_4_4, IQ4_NL_4_8, IQ4_NL_8_8, no longer allowed in files
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
  Q2_0 = 42,
  // Ids from 1000 are moe.cpp's in-memory layouts: never read from or
  // written to a file (a file naming one is refused as an unknown type).
  Q4_K_R4 = 1000,  // Q4_K rows interleaved four at a time (quant/q4k_r4.h)
  Q8_0_R4 = 1001,  // Q8_0 and Q5_0 rows interleaved four at a time (quant/q32_r4.h)
  Q5_0_R4 = 1002,
};

inline constexpr int kGgmlTypeIdLimit = 43;  // ids are < this
inline constexpr int64_t QK_K = 256;         // super-block size of the K quants

struct GgmlTypeTraits {
  const char* name;     // as llama.cpp prints it: "q4_K", "f32", "iq2_xxs"
  int64_t block_size;   // elements per block
  size_t type_size;     // bytes per block
  bool can_dequantize;  // false: the file can be described, but not computed with yet
};

// Traits for a type id read from a file; nullptr when the id is not a ggml type
// (removed ids and the in-memory layouts included).
const GgmlTypeTraits* ggml_type_traits(uint32_t id);
const GgmlTypeTraits& ggml_type_traits(GgmlType type);

inline const char* ggml_type_name(GgmlType type) { return ggml_type_traits(type).name; }
// Accepts llama.cpp's names case-insensitively ("Q4_K", "q4_k", "bf16").
std::optional<GgmlType> ggml_type_from_name(std::string_view name);

// Bytes of a row of n elements; throws moe::Error if n is not a multiple of
// the block size.
size_t ggml_row_size(GgmlType type, int64_t n);

// Throws a clear error if tensor data of this type cannot be computed with
// (ternary types, NVFP4, Q1_0/Q2_0, integer types): `what` names the tensor.
void ggml_require_supported(GgmlType type, std::string_view what);

}  // namespace moe
