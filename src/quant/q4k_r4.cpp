#include "quant/q4k_r4.h"

#include <cstring>

#include "core/fp16.h"
#include "quant/byte_moves.h"

namespace moe {

namespace {

// Where four values of row r, sub-block s start: in a Q4_K block's qs
// (sub-blocks 2p and 2p + 1 share bytes 32p.., low and high nibbles) and in
// the interleaved block's qs[s] (vector k in nibble k % 2 of bytes
// 32 (k / 2)..; lane 2r + h of it holds values 8k + 4h + 0..3).
inline int q4_k_offset(int s, int k, int h) { return 32 * (s / 2) + 8 * k + 4 * h; }
inline int r4_offset(int r, int k, int h) { return 32 * (k / 2) + 4 * (2 * r + h); }

// The 4-bit value of row r, sub-block s, position e of an interleaved block.
inline int r4_value(const BlockQ4_KR4& x, int r, int s, int e) {
  const int k = e / 8, h = (e % 8) / 4;
  const uint8_t v = x.qs[s][r4_offset(r, k, h) + e % 4];
  return k % 2 ? v >> 4 : v & 0x0f;
}

const BlockQ4_K& q4_k_block(const uint8_t* rows, size_t row_stride, int r, int64_t i) {
  return reinterpret_cast<const BlockQ4_K*>(rows + static_cast<size_t>(r) * row_stride)[i];
}

}  // namespace

void repack_q4_k_r4(const uint8_t* rows, size_t row_stride, int64_t n, BlockQ4_KR4* out) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    BlockQ4_KR4& o = out[i];
    std::memset(o.qs, 0, sizeof o.qs);
    for (int r = 0; r < 4; ++r) {
      const BlockQ4_K& b = q4_k_block(rows, row_stride, r, i);
      o.d[r] = b.d;
      o.dmin[r] = b.dmin;
      for (int s = 0; s < 8; ++s) {
        int sc, m;
        k_scale_min(s, b.scales, &sc, &m);
        o.sc[s][r] = static_cast<uint8_t>(sc);
        o.mins[r][s] = static_cast<uint8_t>(m);
        // Four values at a time: the source's nibble s % 2 into nibble k % 2.
        for (int k = 0; k < 4; ++k)
          for (int h = 0; h < 2; ++h) {
            const uint32_t v = (load4(b.qs + q4_k_offset(s, k, h)) >> (4 * (s % 2))) & 0x0f0f0f0fu;
            or4(o.qs[s] + r4_offset(r, k, h), v << (4 * (k % 2)));
          }
      }
    }
  }
}

void unpack_q4_k_r4(const BlockQ4_KR4* x, int64_t n, uint8_t* rows, size_t row_stride) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    const BlockQ4_KR4& o = x[i];
    for (int r = 0; r < 4; ++r) {
      BlockQ4_K& b = reinterpret_cast<BlockQ4_K*>(rows + static_cast<size_t>(r) * row_stride)[i];
      b.d = o.d[r];
      b.dmin = o.dmin[r];
      std::memset(b.scales, 0, sizeof b.scales);
      std::memset(b.qs, 0, sizeof b.qs);
      for (int s = 0; s < 8; ++s) {
        // ggml's packing (quantize_row_q4_K_ref), which k_scale_min reads.
        const uint8_t ls = o.sc[s][r], lm = o.mins[r][s];
        if (s < 4) {
          b.scales[s] = ls;
          b.scales[s + 4] = lm;
        } else {
          b.scales[s + 4] = static_cast<uint8_t>((ls & 0x0f) | ((lm & 0x0f) << 4));
          b.scales[s - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
          b.scales[s] |= static_cast<uint8_t>((lm >> 4) << 6);
        }
        for (int k = 0; k < 4; ++k)
          for (int h = 0; h < 2; ++h) {
            const uint32_t v = (load4(o.qs[s] + r4_offset(r, k, h)) >> (4 * (k % 2))) & 0x0f0f0f0fu;
            or4(b.qs + q4_k_offset(s, k, h), v << (4 * (s % 2)));
          }
      }
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
