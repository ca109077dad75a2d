// llama.cpp's IQ block formats (importance-matrix quants): the block structs,
// their dequantization (the float arithmetic of ggml's dequantize_row_iq*, so
// that embedding rows and requantized tensors come out as llama.cpp's), and a
// decoding into small integers for the dot products.
//
// Every super-block of 256 (IQ4_NL: block of 32) splits into groups of 32
// elements. Group g decodes to 32 int8 values and an integer scale per 16
// elements such that element j of the group is
//     d * kIqFraction<T> * scale[j / 16] * value[j]
// exactly (in real numbers): the dot product with Q8_K activations is then an
// integer sum per super-block, times d * d_act, times the fraction. IQ1's
// elements are grid + delta with delta = +-1/8: the values are 8 grid + 1 or
// 8 grid - 1 (|value| <= 9) and the fraction carries the 1/8.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/fp16.h"
#include "core/ggml_type.h"
#include "quant/iq_grids.h"

namespace moe {

struct BlockIQ2_XXS {
  static constexpr int kElements = 256;
  uint16_t d;
  uint16_t qs[32];  // per group: 4 x 8-bit grid index | 4 x 7-bit signs, 4-bit scale (top)
};
struct BlockIQ2_XS {
  static constexpr int kElements = 256;
  uint16_t d;
  uint16_t qs[32];     // 9-bit grid index | 7-bit signs, per 8 elements
  uint8_t scales[8];   // 4-bit scale per 16 elements
};
struct BlockIQ2_S {
  static constexpr int kElements = 256;
  uint16_t d;
  uint8_t qs[64];      // [0, 32): grid index low 8 bits per 8 elements; [32, 64): sign bits
  uint8_t qh[8];       // grid index bits 8-9, per group
  uint8_t scales[8];   // 4-bit scale per 16 elements
};
struct BlockIQ3_XXS {
  static constexpr int kElements = 256;
  uint16_t d;
  uint8_t qs[96];  // [0, 64): 8-bit grid index per 4 elements; [64, 96): per group 4 x 7-bit signs | 4-bit scale
};
struct BlockIQ3_S {
  static constexpr int kElements = 256;
  uint16_t d;
  uint8_t qs[64];      // grid index low 8 bits per 4 elements
  uint8_t qh[8];       // grid index bit 8
  uint8_t signs[32];   // a sign bit per element
  uint8_t scales[4];   // 4-bit scale per 32 elements
};
struct BlockIQ1_S {
  static constexpr int kElements = 256;
  uint16_t d;
  uint8_t qs[32];   // grid index low 8 bits per 8 elements
  uint16_t qh[8];   // per group: 4 x 3 index bits, 3-bit scale, delta sign (top bit)
};
struct BlockIQ1_M {
  static constexpr int kElements = 256;
  uint8_t qs[32];      // grid index low 8 bits per 8 elements
  uint8_t qh[16];      // per 8 elements: 3 index bits and a delta sign bit
  uint8_t scales[8];   // 3-bit scale per 16 elements; the f16 d in the top nibbles of the four words
};
struct BlockIQ4_NL {
  static constexpr int kElements = 32;
  uint16_t d;
  uint8_t qs[16];  // nibbles: elements j (low) and j + 16 (high)
};
struct BlockIQ4_XS {
  static constexpr int kElements = 256;
  uint16_t d;
  uint16_t scales_h;   // bits 4-5 of the 6-bit scale per group
  uint8_t scales_l[4]; // bits 0-3 of the 6-bit scale per group
  uint8_t qs[128];     // nibbles, as IQ4_NL per group
};

static_assert(sizeof(BlockIQ2_XXS) == 66 && sizeof(BlockIQ2_XS) == 74 && sizeof(BlockIQ2_S) == 82);
static_assert(sizeof(BlockIQ3_XXS) == 98 && sizeof(BlockIQ3_S) == 110);
static_assert(sizeof(BlockIQ1_S) == 50 && sizeof(BlockIQ1_M) == 56);
static_assert(sizeof(BlockIQ4_NL) == 18 && sizeof(BlockIQ4_XS) == 136);

inline bool is_iq_type(GgmlType t) {
  switch (t) {
    case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS: case GgmlType::IQ2_S: case GgmlType::IQ3_XXS:
    case GgmlType::IQ3_S: case GgmlType::IQ1_S: case GgmlType::IQ1_M: case GgmlType::IQ4_NL:
    case GgmlType::IQ4_XS:
      return true;
    default:
      return false;
  }
}

// One decoded group of 32 elements (see the top of this file).
struct IqGroup {
  int8_t v[32];
  int32_t scale[2];  // elements 0-15, 16-31
};

// The fraction each type's integer form carries (a power of two).
inline float iq_fraction(GgmlType t) {
  switch (t) {
    case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS: case GgmlType::IQ2_S: return 0.125f;
    case GgmlType::IQ3_XXS: return 0.25f;
    case GgmlType::IQ1_S: case GgmlType::IQ1_M: return 0.125f;
    default: return 1.0f;  // IQ3_S, IQ4_NL, IQ4_XS
  }
}

// The f16 super-block scale d of a block (IQ1_M packs it in its scales).
inline float iq1m_d(const BlockIQ1_M& b) {
  uint16_t sc[4];
  std::memcpy(sc, b.scales, 8);
  return fp16_to_fp32(static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) |
                                            (sc[3] & 0xf000)));
}

// Group g of a super-block, as integers. IQ4_NL has one group (g = 0).
void iq_decode_group(GgmlType t, const uint8_t* block, int g, IqGroup& out);
// The super-block's d (float) as the integer form uses it.
float iq_block_d(GgmlType t, const uint8_t* block);

// ggml's dequantization of one block (kElements floats).
void iq_dequantize_block(GgmlType t, const uint8_t* block, float* y);

}  // namespace moe
