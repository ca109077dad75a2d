// Products over Q4_K rows interleaved four at a time (quant/q4k_r4.h): the
// per-row path of matmul.h for a Q4_K_R4 weight. Tokens are taken two at a
// time per group of four rows, so a group's blocks are read from memory once
// and from L1 for the next pair. The GEMM (16+ tokens) reads these rows too:
// gemm_rows unpacks a tile's groups back to Q4_K before its own repack.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/tensor.h"
#include "quant/q4k_r4.h"

namespace moe {

// out[t][r] = dot(row r, ys[t]) for t < nt (1 or 2) over nb blocks. The
// AVX-512 VNNI kernel's float sums are in another order than
// q4_k_r4_dot_ref (lanes): they agree to float rounding. Each token's sums
// are the same operations whatever nt is, so a token's result does not
// depend on its neighbour (batch invariance). Null without AVX-512 VNNI.
using Q4KR4DotFn = void (*)(const BlockQ4_KR4* x, const BlockQ8_K* const* ys, int nt, int64_t nb, float* out);
Q4KR4DotFn q4_k_r4_dot_kernel();

// y[t * y_stride + r] for rows [r0, r1) of W (Q4_K_R4) and n_tok activation
// rows (Q8_K) act_row bytes apart; the kernel where there is one, else the
// scalar reference. Rows outside [r0, r1) of a boundary group are computed
// and not written.
void q4_k_r4_rows(const TensorView& W, int64_t r0, int64_t r1, const uint8_t* act, size_t act_row, int64_t n_tok,
                  float* y, int64_t y_stride);

}  // namespace moe
