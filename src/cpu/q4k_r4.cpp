#include "cpu/q4k_r4.h"

#include <cstring>

#include "core/fp16.h"

namespace moe {

namespace {

// Byte b (0..31) of vector k (0..3) of a sub-block: lane b / 4 holds row
// lane / 2's values 8k + 4 (lane % 2) + b % 4.
inline int interleaved_row(int b) { return b / 8; }
inline int interleaved_value(int k, int b) { return 8 * k + 4 * ((b / 4) % 2) + b % 4; }

// The 4-bit value of sub-block s (0..7), position e (0..31), of a Q4_K block.
inline int q4_k_value(const BlockQ4_K& b, int s, int e) {
  const uint8_t byte = b.qs[32 * (s / 2) + e];
  return s % 2 ? byte >> 4 : byte & 0x0f;
}

// The 4-bit value of row r, sub-block s, position e of an interleaved block.
inline int r4_value(const BlockQ4_KR4& x, int r, int s, int e) {
  const int k = e / 8, half = (e % 8) / 4, i = e % 4;
  const int byte = 4 * (2 * r + half) + i;
  const uint8_t v = x.qs[s][(k / 2) * 32 + byte];
  return k % 2 ? v >> 4 : v & 0x0f;
}

}  // namespace

void repack_q4_k_r4(const uint8_t* rows, size_t row_stride, int64_t n, BlockQ4_KR4* out) {
  const int64_t nb = n / kQK;
  for (int64_t i = 0; i < nb; ++i) {
    BlockQ4_KR4& o = out[i];
    std::memset(&o, 0, sizeof o);
    for (int r = 0; r < 4; ++r) {
      const BlockQ4_K& b = reinterpret_cast<const BlockQ4_K*>(rows + static_cast<size_t>(r) * row_stride)[i];
      o.d[r] = b.d;
      o.dmin[r] = b.dmin;
      for (int s = 0; s < 8; ++s) {
        int sc, m;
        k_scale_min(s, b.scales, &sc, &m);
        o.sc[s][r] = static_cast<uint8_t>(sc);
        o.mins[r][s] = static_cast<uint8_t>(m);
      }
    }
    for (int s = 0; s < 8; ++s)
      for (int k = 0; k < 4; ++k)
        for (int byte = 0; byte < 32; ++byte) {
          const int r = interleaved_row(byte);
          const BlockQ4_K& b = reinterpret_cast<const BlockQ4_K*>(rows + static_cast<size_t>(r) * row_stride)[i];
          const int v = q4_k_value(b, s, interleaved_value(k, byte));
          o.qs[s][(k / 2) * 32 + byte] |= static_cast<uint8_t>(k % 2 ? v << 4 : v);
        }
  }
}

void dequantize_q4_k_r4_row(const BlockQ4_KR4* x, int r, int64_t n, float* y) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    const BlockQ4_KR4& b = x[i];
    const float d = fp16_to_fp32(b.d[r]), dmin = fp16_to_fp32(b.dmin[r]);
    for (int s = 0; s < 8; ++s) {
      const float dl = d * static_cast<float>(b.sc[s][r]);
      const float ml = mul_rn(dmin, static_cast<float>(b.mins[r][s]));
      for (int e = 0; e < 32; ++e) *y++ = mul_rn(dl, static_cast<float>(r4_value(b, r, s, e))) - ml;
    }
  }
}

void q4_k_r4_dot_ref(const BlockQ4_KR4* x, const BlockQ8_K* y, int64_t nb, float out[4]) {
  for (int r = 0; r < 4; ++r) {
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      const BlockQ4_KR4& b = x[i];
      int32_t isum = 0, msum = 0;
      for (int s = 0; s < 8; ++s) {
        int32_t dot = 0;
        for (int e = 0; e < 32; ++e) dot += r4_value(b, r, s, e) * y[i].qs[32 * s + e];
        isum += dot * b.sc[s][r];
        msum += b.mins[r][s] * (y[i].bsums[2 * s] + y[i].bsums[2 * s + 1]);
      }
      sum += fp16_to_fp32(b.d[r]) * y[i].d * static_cast<float>(isum) -
             fp16_to_fp32(b.dmin[r]) * y[i].d * static_cast<float>(msum);
    }
    out[r] = sum;
  }
}

}  // namespace moe
