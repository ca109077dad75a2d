// Scalar reference dequantization: ggml blocks -> fp32, exactly as llama.cpp's
// dequantize_row_* functions compute it. The CUDA kernels (cuda/dequantize.cu)
// run the same block decoders (quant/blocks.h) and are tested against these.
#pragma once

#include <cstdint>
#include <vector>

#include "core/ggml_type.h"

namespace moe {

// Decodes n elements of `type` at src (any alignment) into dst. Throws
// moe::Error when n is negative or not a multiple of the type's block size,
// or when the type has no decoder (TQ*, NVFP4, Q1_0, Q2_0, integer types).
void dequantize_row_ref(GgmlType type, const void* src, float* dst, int64_t n);

// The same into a fresh vector.
std::vector<float> dequantize_tensor_ref(GgmlType type, const void* src, int64_t n_elements);

}  // namespace moe
