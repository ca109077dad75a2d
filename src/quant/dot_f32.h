// The one f32 dot product of the project and its axpy: the f32 weight
// reference (vec_dot), the CPU attention and the scalar references of the
// device kernels all use these, so every path sums in the same order.
#pragma once

#include <cstdint>

namespace moe {

// sum_i a[i] * b[i] in 16 interleaved partial sums, reduced pairwise: the
// order SIMD hardware computes it in, written so the compiler vectorizes it
// (no reassociation needed).
float dot_f32(const float* a, const float* b, int64_t n);

// y[i] += alpha * x[i]
void axpy_f32(float alpha, const float* x, int64_t n, float* y);

}  // namespace moe
