// Products over rows interleaved four at a time (quant/interleaved.h): the
// per-row path of matmul.h for Q4_K_R4, Q8_0_R4 and Q5_0_R4 weights. Tokens
// are taken two at a time per group of four rows, so a group's blocks are
// read from memory once and from L1 for the next pair. The GEMM (16+
// tokens) reads these rows too: gemm_rows unpacks a tile's groups first.
//
// The AVX-512 VNNI kernels (interleaved_avx512.cpp) sum floats in another
// order than the scalar references of quant/q4k_r4.h and quant/q32_r4.h
// (lanes): they agree to float rounding. Each token's sums are the same
// operations whether it is alone or paired, so a token's result never
// depends on its neighbour (batch invariance).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/tensor.h"
#include "quant/q32_r4.h"
#include "quant/q4k_r4.h"

namespace moe {

// out[t * 4 + r] = dot(row r, ys[t]) for t < nt (1 or 2) over nb blocks.
// Null without AVX-512 VNNI.
using Q4KR4DotFn = void (*)(const BlockQ4_KR4* x, const BlockQ8_K* const* ys, int nt, int64_t nb, float* out);
Q4KR4DotFn q4_k_r4_dot_kernel();
// The same for Q8_0_R4 and Q5_0_R4 (x: their blocks), with sums[t][i] the
// sum of the 32 quantized activations of ys[t]'s block i.
using Q32R4DotFn = void (*)(const void* x, const BlockQ8_0* const* ys, const int32_t* const* sums, int nt,
                            int64_t nb, float* out);
Q32R4DotFn q32_r4_dot_kernel(GgmlType type);

// y[t * y_stride + r] for rows [r0, r1) of an interleaved W and n_tok
// activation rows (W's vec_dot_type) act_row bytes apart; the kernel where
// there is one, else the scalar reference. Rows outside [r0, r1) of a
// boundary group are computed and not written.
void interleaved_rows(const TensorView& W, int64_t r0, int64_t r1, const uint8_t* act, size_t act_row, int64_t n_tok,
                      float* y, int64_t y_stride);

}  // namespace moe
