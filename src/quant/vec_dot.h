// Dot products of weight rows with activation rows, as ggml computes them on
// the CPU: the activations are first quantized to the weight type's partner
// type (ggml's vec_dot_type), then each weight block is multiplied with the
// matching activation block in integer arithmetic and scaled.
#pragma once

#include <cstdint>

#include "core/ggml_type.h"

namespace moe {

// Q4_0/Q5_0/Q8_0/IQ4_NL/MXFP4 -> Q8_0, Q4_1/Q5_1 -> Q8_1, K and IQ quants -> Q8_K,
// F16 -> F16, BF16 -> BF16, F32 -> F32.
GgmlType vec_dot_type(GgmlType weight_type);

// Quantizes n floats (a multiple of the block size of t) into type t, with
// the rounding ggml's CPU path uses.
void quantize_activation_row(GgmlType t, const float* x, void* y, int64_t n);

// Dot product of one weight row (weight_type) with one activation row
// already quantized to vec_dot_type(weight_type); n elements.
float vec_dot_row(GgmlType weight_type, const void* w_row, const void* act_row, int64_t n);

}  // namespace moe
