#pragma once

// Reference quantization (fp32 -> GGUF tensor bytes), bit-exact with what
// llama.cpp's llama-quantize writes when it runs without an importance matrix
// (ggml_quantize_chunk with imatrix == NULL, which for every type below ends
// in ggml's quantize_row_*_ref).

#include <cstdint>

#include "core/ggml_type.h"

namespace moe {

// Quantizes n floats of x into y, which must hold n / block_size blocks of
// `type`. Supported: F32 (copy), F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K. Throws moe::Error when n is not a
// multiple of the type's block size or the type is not supported.
void quantize_row_ref(GgmlType type, const float* x, void* y, int64_t n);

// True for the types quantize_row_ref accepts.
bool quantize_supported(GgmlType type);

// The K-quant kernels behind quantize_row_ref (quantize_k.cpp); nb is the
// number of 256-element super-blocks. Call quantize_row_ref instead.
struct BlockQ2_K;
struct BlockQ3_K;
struct BlockQ4_K;
struct BlockQ5_K;
struct BlockQ6_K;
struct BlockQ8_K;
namespace quant_detail {
void quantize_rows_q2_k(const float* x, BlockQ2_K* y, int64_t nb);
void quantize_rows_q3_k(const float* x, BlockQ3_K* y, int64_t nb);
void quantize_rows_q4_k(const float* x, BlockQ4_K* y, int64_t nb);
void quantize_rows_q5_k(const float* x, BlockQ5_K* y, int64_t nb);
void quantize_rows_q6_k(const float* x, BlockQ6_K* y, int64_t nb);
void quantize_rows_q8_k(const float* x, BlockQ8_K* y, int64_t nb);
}  // namespace quant_detail

}  // namespace moe
