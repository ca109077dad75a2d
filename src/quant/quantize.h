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
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, MXFP4. Throws moe::Error when n is not a
// multiple of the type's block size or the type is not supported.
void quantize_row_ref(GgmlType type, const float* x, void* y, int64_t n);

// True for the types quantize_row_ref accepts.
bool quantize_supported(GgmlType type);

// ggml_quantize_chunk: nrows rows of n_per_row floats, quantized the way
// llama-quantize does with an importance matrix. imatrix holds n_per_row
// weights (the mean squared activation of each input column) or is null;
// without one the K and legacy types give exactly quantize_row_ref. Byte-
// identical to ggml for every type quantize_rows_supported accepts.
void quantize_rows(GgmlType type, const float* x, void* y, int64_t nrows, int64_t n_per_row, const float* imatrix);
bool quantize_rows_supported(GgmlType type);
// ggml refuses to make these without an importance matrix (iq2_xxs, iq2_xs,
// iq1_s, iq1_m): their grids are searched by weighted error only.
bool quantize_requires_imatrix(GgmlType type);

// The K-quant kernels behind quantize_row_ref (quantize_k.cpp); nb is the
// number of 256-element super-blocks. Call quantize_row_ref instead.
struct BlockQ2_K;
struct BlockQ3_K;
struct BlockQ4_K;
struct BlockQ5_K;
struct BlockQ6_K;
struct BlockQ8_K;
struct BlockQ4_0;
struct BlockQ4_1;
struct BlockQ5_0;
struct BlockQ5_1;
struct BlockIQ4_NL;
struct BlockIQ4_XS;
struct BlockIQ2_XXS;
struct BlockIQ2_XS;
struct BlockIQ2_S;
struct BlockIQ3_XXS;
struct BlockIQ3_S;
struct BlockIQ1_S;
struct BlockIQ1_M;
namespace quant_detail {
void quantize_rows_q2_k(const float* x, BlockQ2_K* y, int64_t nb);
void quantize_rows_q3_k(const float* x, BlockQ3_K* y, int64_t nb);
void quantize_rows_q4_k(const float* x, BlockQ4_K* y, int64_t nb);
void quantize_rows_q5_k(const float* x, BlockQ5_K* y, int64_t nb);
void quantize_rows_q6_k(const float* x, BlockQ6_K* y, int64_t nb);
void quantize_rows_q8_k(const float* x, BlockQ8_K* y, int64_t nb);

// Weighted (importance matrix) quantization of ONE row of n_per_row floats,
// ggml's quantize_row_*_impl (quantize_weighted.cpp); w is never null.
void quantize_row_q4_0_weighted(const float* x, BlockQ4_0* y, int64_t n_per_row, const float* w);
void quantize_row_q4_1_weighted(const float* x, BlockQ4_1* y, int64_t n_per_row, const float* w);
void quantize_row_q5_0_weighted(const float* x, BlockQ5_0* y, int64_t n_per_row, const float* w);
void quantize_row_q5_1_weighted(const float* x, BlockQ5_1* y, int64_t n_per_row, const float* w);
void quantize_row_q2_k_weighted(const float* x, BlockQ2_K* y, int64_t n_per_row, const float* w);
void quantize_row_q3_k_weighted(const float* x, BlockQ3_K* y, int64_t n_per_row, const float* w);
void quantize_row_q4_k_weighted(const float* x, BlockQ4_K* y, int64_t n_per_row, const float* w);
void quantize_row_q5_k_weighted(const float* x, BlockQ5_K* y, int64_t n_per_row, const float* w);
void quantize_row_q6_k_weighted(const float* x, BlockQ6_K* y, int64_t n_per_row, const float* w);

// The IQ quantizers take one row; w may be null where ggml allows it.
void quantize_row_iq4_nl(const float* x, BlockIQ4_NL* y, int64_t n_per_row, const float* w);
void quantize_row_iq4_xs(const float* x, BlockIQ4_XS* y, int64_t n_per_row, const float* w);
void quantize_row_iq3_xxs(const float* x, BlockIQ3_XXS* y, int64_t n_per_row, const float* w);  // quantize_iq3.cpp
void quantize_row_iq3_s(const float* x, BlockIQ3_S* y, int64_t n_per_row, const float* w);
void quantize_row_iq2_xxs(const float* x, BlockIQ2_XXS* y, int64_t n_per_row, const float* w);  // quantize_iq2.cpp; w required
void quantize_row_iq2_xs(const float* x, BlockIQ2_XS* y, int64_t n_per_row, const float* w);    // w required
void quantize_row_iq2_s(const float* x, BlockIQ2_S* y, int64_t n_per_row, const float* w);
void quantize_row_iq1_s(const float* x, BlockIQ1_S* y, int64_t n_per_row, const float* w);      // quantize_iq1.cpp; w required
void quantize_row_iq1_m(const float* x, BlockIQ1_M* y, int64_t n_per_row, const float* w);      // w required
}  // namespace quant_detail

}  // namespace moe
