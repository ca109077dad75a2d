// ggml's MXFP4 (the OCP microscaling FP4 format, block_mxfp4 in
// ggml-common.h): 32 elements share one E8M0 exponent byte e, and each
// element is a 4-bit E2M1 float (sign, two exponent bits, one mantissa bit).
//
// ggml stores the E2M1 values doubled, as the integers of kMxfp4Values, and
// halves the block scale instead: element j is kMxfp4Values[nibble] *
// 2^(e - 128). The values being small integers is what lets MXFP4 take the
// Q8_0 activations and integer dot products of IQ4_NL, whose blocks have the
// same geometry (byte j: element j in the low nibble, j + 16 in the high one);
// only the scale differs, a power of two instead of an f16.
#pragma once

#include <cstdint>

#include "core/fp16.h"
#include "core/host_device.h"

namespace moe {

inline constexpr int QK_MXFP4 = 32;

struct BlockMXFP4 {
  static constexpr int kElements = QK_MXFP4;
  uint8_t e;                  // E8M0 exponent: the block scale is 2^(e - 127)
  uint8_t qs[QK_MXFP4 / 2];   // nibbles: elements j (low) and j + 16 (high)
};
static_assert(sizeof(BlockMXFP4) == 17, "block_mxfp4 is 17 bytes");

// The E2M1 values times two (ggml's kvalues_mxfp4): codes 0-7 are
// 0, 0.5, 1, 1.5, 2, 3, 4, 6 and 8-15 their negatives (8 is -0).
inline constexpr int8_t kMxfp4Values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// kMxfp4Values[code] without a table, for device code (a host array cannot be
// indexed there): the magnitudes of codes 0-7 are the nibbles of 0xC8643210.
MOE_HD int mxfp4_value(unsigned code) {
  const int mag = static_cast<int>((0xC8643210u >> (4 * (code & 7u))) & 0xfu);
  return (code & 8u) ? -mag : mag;
}

// 2^(e - 128) as a float, the half of the E8M0 scale that goes with the
// doubled values: ggml's GGML_E8M0_TO_FP32_HALF, bit for bit. e = 0 and 1
// are the denormals 2^-128 and 2^-127; e = 255 (E8M0's NaN) comes out as
// 2^127, as in ggml, which does not treat it apart either.
MOE_HD float e8m0_to_fp32_half(uint8_t e) {
  const uint32_t bits = e < 2 ? 0x00200000u << e : static_cast<uint32_t>(e - 1) << 23;
  return f32_from_bits(bits);
}

// ggml's dequantize_row_mxfp4: the value (an int8) times the half scale.
// Exact: a product of an integer below 16 and a power of two.
MOE_HD void dequant_block_mxfp4(const BlockMXFP4& b, float* y) {
  const float d = e8m0_to_fp32_half(b.e);
  for (int j = 0; j < QK_MXFP4 / 2; ++j) {
    y[j] = static_cast<float>(mxfp4_value(b.qs[j] & 0x0fu)) * d;
    y[j + QK_MXFP4 / 2] = static_cast<float>(mxfp4_value(static_cast<unsigned>(b.qs[j]) >> 4)) * d;
  }
}

}  // namespace moe
