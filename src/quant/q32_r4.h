// Q8_0 and Q5_0 rows interleaved four at a time (GgmlType::Q8_0_R4,
// Q5_0_R4; in-memory layouts, never in a file): Q4_K_M's ffn_down experts
// of DeepSeek shapes, whose rows (1408, 2048 values) are not whole 256-blocks
// so llama-quantize falls back to Q5_0 and Q8_0 for them. The same idea as
// quant/q4k_r4.h, with 32-value blocks and one scale per block and row.
//
// Per 32 values of 4 rows, the unsigned values u of vectors k = 0..3 of 32
// bytes: byte b holds row b / 8's value 8k + 4 ((b / 4) % 2) + b % 4, so a
// vpdpbusd with an 8-byte activation broadcast adds 8 values of all four
// rows. A weight is d * (u - offset): Q8_0 stores u = q + 128 (offset 128),
// Q5_0 its own 5-bit u (offset 16); the kernel subtracts offset * sum(a)
// per block in integers. Q8_0_R4 is 136 bytes per 4 x 32 (Q8_0's 4 x 34),
// Q5_0_R4 88 (Q5_0's 4 x 22): the fifth bits as one 32-bit mask per vector.
#pragma once

#include <cstdint>

#include "quant/blocks_legacy.h"

namespace moe {

struct BlockQ8_0R4 {
  uint16_t d[4];      // fp16, per row
  uint8_t u[4][32];   // [vector k] q + 128
};
static_assert(sizeof(BlockQ8_0R4) == 136, "4 rows x 32 values in 136 bytes");

struct BlockQ5_0R4 {
  uint16_t d[4];       // fp16, per row
  uint32_t hmask[4];   // [vector k] bit b: the fifth bit of byte b
  uint8_t qs[2][32];   // vector k's low four bits in nibble k % 2 of qs[k / 2]
};
static_assert(sizeof(BlockQ5_0R4) == 88, "4 rows x 32 values in 88 bytes");

inline constexpr int kQ8_0R4Offset = 128, kQ5_0R4Offset = 16;

// Four rows (row r at rows + r * row_stride) of n values (a multiple of 32)
// into n / 32 interleaved blocks, and back byte for byte.
void repack_q8_0_r4(const uint8_t* rows, size_t row_stride, int64_t n, BlockQ8_0R4* out);
void unpack_q8_0_r4(const BlockQ8_0R4* x, int64_t n, uint8_t* rows, size_t row_stride);
void repack_q5_0_r4(const uint8_t* rows, size_t row_stride, int64_t n, BlockQ5_0R4* out);
void unpack_q5_0_r4(const BlockQ5_0R4* x, int64_t n, uint8_t* rows, size_t row_stride);

// The unsigned value u of row r, position e (0..31) of a block.
int q8_0_r4_value(const BlockQ8_0R4& b, int r, int e);
int q5_0_r4_value(const BlockQ5_0R4& b, int r, int e);

// out[r] = dot(row r, y) over nb blocks, the scalar references: per block
// the exact integer sum of (u - offset) * a, times d_r * d_y, blocks added
// in order (what ggml's Q8_0 and Q5_0 products compute, float order aside).
void q8_0_r4_dot_ref(const BlockQ8_0R4* x, const BlockQ8_0* y, int64_t nb, float out[4]);
void q5_0_r4_dot_ref(const BlockQ5_0R4* x, const BlockQ8_0* y, int64_t nb, float out[4]);

}  // namespace moe
