// Helpers shared by the reference quantizers (quantize.cpp, quantize_k.cpp),
// each reproducing a piece of ggml-quants.c's arithmetic exactly.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace moe::quant_detail {

// ggml's nearest_int: adding 1.5 * 2^23 puts the rounded integer in the low
// mantissa bits (round half to even); valid for |v| < 2^22.
inline int nearest_int(float v) {
  const float shifted = v + 12582912.f;
  int32_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  return (bits & 0x007fffff) - 0x00400000;
}

// Largest |v| of a block and the signed value it came from (first one wins
// on ties, as ggml's strict comparison does).
struct SignedMax {
  float amax = 0.0f;
  float max = 0.0f;
};
inline SignedMax signed_abs_max(const float* x, int n) {
  SignedMax m;
  for (int j = 0; j < n; ++j) {
    const float ax = std::fabs(x[j]);
    if (ax > m.amax) {
      m.amax = ax;
      m.max = x[j];
    }
  }
  return m;
}

}  // namespace moe::quant_detail
