// The 32-element ggml blocks (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1), byte for byte
// as ggml-common.h lays them out, and a scalar decoder for each.
//
// Half-precision fields are kept as their uint16_t bits. The decoders are
// MOE_HD so the CUDA kernels run exactly this arithmetic, in llama.cpp's order
// of operations; every product that feeds an addition or subtraction goes
// through mul_rn() so nvcc cannot fuse the two into an fma, and the GPU result
// stays bit-identical to the CPU reference.
//
// Element order inside a block (j = 0..15): byte qs[j] holds element j in its
// low nibble and element j + 16 in its high nibble. For the 5-bit types,
// bit j of the little-endian u32 qh is the fifth bit of element j.
#pragma once

#include <cstdint>

#include "core/fp16.h"
#include "core/host_device.h"

namespace moe {

inline constexpr int QK4_0 = 32;
inline constexpr int QK4_1 = 32;
inline constexpr int QK5_0 = 32;
inline constexpr int QK5_1 = 32;
inline constexpr int QK8_0 = 32;
inline constexpr int QK8_1 = 32;

// a * b rounded to float, never contracted with a following add into an fma
// (the host compiler does not contract under -std=c++20; nvcc would).
MOE_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

// x = d * (q - 8), q a 4-bit quant.
struct BlockQ4_0 {
  static constexpr int kElements = QK4_0;
  uint16_t d;               // fp16 scale
  uint8_t qs[QK4_0 / 2];    // nibbles
};
static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 is 18 bytes");

// x = d * q + m, q a 4-bit quant.
struct BlockQ4_1 {
  static constexpr int kElements = QK4_1;
  uint16_t d;               // fp16 scale
  uint16_t m;               // fp16 min
  uint8_t qs[QK4_1 / 2];    // nibbles
};
static_assert(sizeof(BlockQ4_1) == 20, "block_q4_1 is 20 bytes");

// x = d * (q - 16), q a 5-bit quant.
struct BlockQ5_0 {
  static constexpr int kElements = QK5_0;
  uint16_t d;               // fp16 scale
  uint8_t qh[4];            // fifth bits, little-endian u32 (not aligned)
  uint8_t qs[QK5_0 / 2];    // low nibbles
};
static_assert(sizeof(BlockQ5_0) == 22, "block_q5_0 is 22 bytes");

// x = d * q + m, q a 5-bit quant.
struct BlockQ5_1 {
  static constexpr int kElements = QK5_1;
  uint16_t d;               // fp16 scale
  uint16_t m;               // fp16 min
  uint8_t qh[4];            // fifth bits, little-endian u32
  uint8_t qs[QK5_1 / 2];    // low nibbles
};
static_assert(sizeof(BlockQ5_1) == 24, "block_q5_1 is 24 bytes");

// x = d * q, q a signed byte.
struct BlockQ8_0 {
  static constexpr int kElements = QK8_0;
  uint16_t d;               // fp16 scale
  int8_t qs[QK8_0];         // quants
};
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 is 34 bytes");

// x = d * q; s = d * sum(q) only serves dot products.
struct BlockQ8_1 {
  static constexpr int kElements = QK8_1;
  uint16_t d;               // fp16 scale
  uint16_t s;               // fp16 d * sum(qs)
  int8_t qs[QK8_1];         // quants
};
static_assert(sizeof(BlockQ8_1) == 36, "block_q8_1 is 36 bytes");

MOE_HD uint32_t load_u32_le(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

MOE_HD void dequant_block_q4_0(const BlockQ4_0& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  for (int j = 0; j < QK4_0 / 2; ++j) {
    y[j] = static_cast<float>((b.qs[j] & 0x0f) - 8) * d;
    y[j + QK4_0 / 2] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
  }
}

MOE_HD void dequant_block_q4_1(const BlockQ4_1& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  const float m = fp16_to_fp32(b.m);
  for (int j = 0; j < QK4_1 / 2; ++j) {
    y[j] = mul_rn(static_cast<float>(b.qs[j] & 0x0f), d) + m;
    y[j + QK4_1 / 2] = mul_rn(static_cast<float>(b.qs[j] >> 4), d) + m;
  }
}

MOE_HD void dequant_block_q5_0(const BlockQ5_0& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  const uint32_t qh = load_u32_le(b.qh);
  for (int j = 0; j < QK5_0 / 2; ++j) {
    const int lo = (b.qs[j] & 0x0f) | static_cast<int>((qh >> j) & 1u) << 4;
    const int hi = (b.qs[j] >> 4) | static_cast<int>((qh >> (j + 16)) & 1u) << 4;
    y[j] = static_cast<float>(lo - 16) * d;
    y[j + QK5_0 / 2] = static_cast<float>(hi - 16) * d;
  }
}

MOE_HD void dequant_block_q5_1(const BlockQ5_1& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  const float m = fp16_to_fp32(b.m);
  const uint32_t qh = load_u32_le(b.qh);
  for (int j = 0; j < QK5_1 / 2; ++j) {
    const int lo = (b.qs[j] & 0x0f) | static_cast<int>((qh >> j) & 1u) << 4;
    const int hi = (b.qs[j] >> 4) | static_cast<int>((qh >> (j + 16)) & 1u) << 4;
    y[j] = mul_rn(static_cast<float>(lo), d) + m;
    y[j + QK5_1 / 2] = mul_rn(static_cast<float>(hi), d) + m;
  }
}

MOE_HD void dequant_block_q8_0(const BlockQ8_0& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  for (int j = 0; j < QK8_0; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
}

MOE_HD void dequant_block_q8_1(const BlockQ8_1& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  for (int j = 0; j < QK8_1; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
}

}  // namespace moe
