// Q4_K rows interleaved four at a time (GgmlType::Q4_K_R4, an in-memory
// layout that is never written to a file): the routed experts' layout for
// the CPU's products with few tokens (generation, MTP's verify). Issue 20.
//
// Why: the one-token Q4_K kernel (src/cpu/qdot_x86.inc) unpacks a row's
// scales, loads its activations and sums its lanes for every row; with four
// rows' blocks side by side one 8-byte activation broadcast feeds a vpdpbusd
// that adds 8 elements of all four rows, scales and mins are unpacked once
// per four rows, and lanes are summed once per four rows at the end
// (src/cpu/interleaved_avx512.cpp; measured 1.7x the elements per second
// from L2, 1.2-1.4x from memory on one core).
//
// Layout per 256 values of 4 rows (592 bytes; Q4_K's 4 x 144 = 576): fp16
// d and dmin per row, the 6-bit scales [sub-block][row] and mins
// [row][sub-block] as bytes, then per 32-value sub-block two 32-byte
// vectors whose low and high nibbles are four vectors k = 0..3 of 8 values:
// 32-bit lane l of vector k holds row l / 2's values 8k + 4 (l % 2) + 0..3.
// A tensor of this type keeps ggml's row arithmetic: a row is 148 bytes per
// 256 values, so the group holding rows 4g..4g+3 starts at row 4g.
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
inline constexpr int64_t kR4Rows = 4;

// Four Q4_K rows (row r at rows + r * row_stride) of n values (a multiple
// of 256) into n / 256 interleaved blocks, and back (byte for byte the rows
// that were repacked: the scales' 6-bit packing has no spare bits).
void repack_q4_k_r4(const uint8_t* rows, size_t row_stride, int64_t n, BlockQ4_KR4* out);
void unpack_q4_k_r4(const BlockQ4_KR4* x, int64_t n, uint8_t* rows, size_t row_stride);

// Row r (0..3) of n values back to floats, exactly as dequantize_row_ref
// gives the Q4_K row it came from.
void dequantize_q4_k_r4_row(const BlockQ4_KR4* x, int r, int64_t n, float* y);

// out[r] = dot(row r, y) over nb blocks, the scalar reference: integer sums
// per sub-block exact, then per block (d_r y.d) * sum_s sc_s isum_s minus
// (dmin_r y.d) * sum_s m_s bsum_s, blocks added in order.
void q4_k_r4_dot_ref(const BlockQ4_KR4* x, const BlockQ8_K* y, int64_t nb, float out[4]);

}  // namespace moe
