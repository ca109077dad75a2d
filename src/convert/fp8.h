// 8-bit floats as published in Hugging Face checkpoints (safetensors dtypes
// F8_E4M3 and F8_E5M2), decoded to float32 exactly.
//
// F8_E4M3 is OCP FP8 E4M3FN (torch.float8_e4m3fn), the format DeepSeek-V3/R1
// weights use: 1 sign bit, 4 exponent bits with bias 7, 3 mantissa bits,
// subnormals, no infinities; S.1111.111 is NaN, so the largest value is 448.
//   exponent 0:      (-1)^s * m/8 * 2^-6
//   exponent 1..15:  (-1)^s * (1 + m/8) * 2^(e-7)
// F8_E5M2 (torch.float8_e5m2) is IEEE half with the low 8 mantissa bits cut
// off, so it decodes through fp16_to_fp32.
//
// Decoding is a 256-entry table built at compile time; every entry is exact
// in float32.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/fp16.h"

namespace moe {

// The formula above, for one code (used to build the table and in tests).
constexpr float fp8_e4m3_to_f32_ref(uint8_t q) {
  const bool neg = (q & 0x80u) != 0;
  const int e = (q >> 3) & 0xf;
  const int m = q & 0x7;
  if (e == 15 && m == 7) return std::numeric_limits<float>::quiet_NaN();
  float v;
  if (e == 0) {
    v = static_cast<float>(m) / 8.0f / 64.0f;  // m/8 * 2^-6
  } else {
    v = 1.0f + static_cast<float>(m) / 8.0f;
    for (int i = 7; i < e; ++i) v *= 2.0f;
    for (int i = e; i < 7; ++i) v *= 0.5f;
  }
  return neg ? -v : v;
}

inline constexpr std::array<float, 256> kFp8E4m3Table = [] {
  std::array<float, 256> t{};
  for (int i = 0; i < 256; ++i) t[i] = fp8_e4m3_to_f32_ref(static_cast<uint8_t>(i));
  return t;
}();

inline float fp8_e4m3_to_f32(uint8_t q) { return kFp8E4m3Table[q]; }

inline float fp8_e5m2_to_f32(uint8_t q) { return fp16_to_fp32(static_cast<uint16_t>(q << 8)); }

// E8M0 (torch.float8_e8m0fnu, the OCP MX scale): 2^(q - 127); 0xFF is NaN.
inline float e8m0_to_f32(uint8_t q) {
  return q == 0xFF ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, static_cast<int>(q) - 127);
}

}  // namespace moe
