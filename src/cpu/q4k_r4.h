// Q4_K rows interleaved four at a time, for products with one or two tokens
// (generation, MTP's verify): issue 20. Work in progress on this branch.
//
// Why: the one-token Q4_K kernel (qdot_x86.inc) unpacks a row's scales,
// loads its activations and sums its lanes for every row; with four rows'
// blocks side by side one 8-byte activation broadcast feeds a vpdpbusd that
// adds 8 elements of all four rows, scales and mins are unpacked once per
// four rows, and lanes are summed once per four rows at the end. Prototype
// (session 17, /work/scratch/s17/r4c.cpp): 1.56-1.62x the elements per
// second from L2, 1.20-1.26x from memory, 2 tokens 1.46x.
//
// Layout per 256 values of 4 rows (592 bytes; Q4_K's 4 x 144 = 576): fp16
// d and dmin per row, the 6-bit scales [sub-block][row] and mins
// [row][sub-block] as bytes, then per 32-value sub-block two 32-byte
// vectors whose low and high nibbles are four vectors k = 0..3 of 8 values:
// 32-bit lane l of vector k holds row l / 2's values 8k + 4 (l % 2) + 0..3.
#pragma once

#include <cstdint>

#include "quant/blocks_k.h"

namespace moe {

struct BlockQ4_KR4 {
  uint16_t d[4], dmin[4];  // fp16, per row
  uint8_t sc[8][4];        // [sub-block][row] 6-bit scales
  uint8_t mins[4][8];      // [row][sub-block] 6-bit mins
  uint8_t qs[8][64];       // [sub-block] the interleaved nibbles
};
static_assert(sizeof(BlockQ4_KR4) == 592, "4 rows x 256 values in 592 bytes");

// Four Q4_K rows (row r at rows + r * row_stride) of n values (a multiple
// of 256) into n / 256 interleaved blocks.
void repack_q4_k_r4(const uint8_t* rows, size_t row_stride, int64_t n, BlockQ4_KR4* out);

// Row r (0..3) of n values back to floats, exactly as dequantize_row_ref
// gives the Q4_K row it came from.
void dequantize_q4_k_r4_row(const BlockQ4_KR4* x, int r, int64_t n, float* y);

// out[r] = dot(row r, y) over nb blocks, the scalar reference: integer sums
// per sub-block exact, then per block (d_r y.d) * sum_s sc_s isum_s minus
// (dmin_r y.d) * sum_s m_s bsum_s, blocks added in order.
void q4_k_r4_dot_ref(const BlockQ4_KR4* x, const BlockQ8_K* y, int64_t nb, float out[4]);

// The same with AVX-512 VNNI for nt = 1 or 2 tokens (ys[t]); out [nt][4].
// The float sums are in another order (lanes): agrees with the reference
// to float rounding. Null without AVX-512 VNNI.
using Q4KR4DotFn = void (*)(const BlockQ4_KR4* x, const BlockQ8_K* const* ys, int nt, int64_t nb, float* out);
Q4KR4DotFn q4_k_r4_dot_kernel();

}  // namespace moe
