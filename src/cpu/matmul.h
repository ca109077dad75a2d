// Matrix products against weights in their stored type, straight from the
// mapping: y[t][r] = sum_i W[r][i] * x[t][i] for every token t and row r of
// a 2-D weight W of shape [in, out] (ggml order). Quantized weights are
// multiplied as ggml does on the CPU: each activation row is quantized to
// the weight type's dot-product partner (Q8_0, Q8_1 or Q8_K; f16 for f16
// weights) and the dot products are computed on the blocks.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace moe {

class ThreadPool;
struct GemmTile;
enum class CpuIsa;

// The instruction set the matmuls use: the best detected, unless the
// environment variable MOE_CPU_ISA=scalar|avx2 asks for less.
CpuIsa cpu_isa_active();

// allow_gemm = false keeps a product on the per-row kernels at any token
// count, so each token's result is what it is alone (the repacked GEMM sums
// in another float order): batch-invariant decoding of many sequences.

// Scratch the caller provides: at least matmul_scratch_bytes(W, n_tokens).
size_t matmul_scratch_bytes(const TensorView& W, int64_t n_tokens, bool allow_gemm = true);

// x: [n_tokens][W.ne[0]] floats; y: [n_tokens][W.ne[1]] floats.
void matmul(const TensorView& W, const float* x, int64_t n_tokens, float* y, void* scratch, ThreadPool& pool,
            bool allow_gemm = true);

// The two halves of a product, for callers that schedule their own work
// (grouped experts): activations quantized once to W's partner type, then
// rows [r0, r1) of W against n_tokens such rows, y[t * y_stride + r].
size_t activation_row_bytes(const TensorView& W);
void quantize_activations(const TensorView& W, const float* x, int64_t n_tokens, uint8_t* act);
void matmul_rows(const TensorView& W, int64_t r0, int64_t r1, const uint8_t* act, int64_t n_tokens, float* y,
                 int64_t y_stride);

// The same halves where the caller also picks between the per-row kernels
// and the repacked GEMM (gemm_q8.h) for each group of tokens: the layout of
// the activation rows for n_tokens tokens, their quantization (rows
// row_bytes apart) and the product over them.
struct ActLayout {
  bool gemm = false;
  size_t row_bytes = 0;
};
ActLayout activation_layout(const TensorView& W, int64_t n_tokens, bool allow_gemm = true);
size_t activation_row_bytes_max(const TensorView& W);  // either layout fits
void quantize_activations(const TensorView& W, ActLayout layout, const float* x, uint8_t* act);  // one row
// `tile` is the repacking buffer of the calling thread (gemm_q8.h).
void matmul_rows(const TensorView& W, ActLayout layout, int64_t r0, int64_t r1, const uint8_t* act, size_t act_stride,
                 int64_t n_tokens, float* y, int64_t y_stride, GemmTile& tile);

// The same on the calling thread alone, for callers that already run one
// product per thread (MLA's per-head projections).
void matmul_serial(const TensorView& W, const float* x, int64_t n_tokens, float* y, void* scratch,
                   bool allow_gemm = true);

}  // namespace moe
