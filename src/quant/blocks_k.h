// The K-quant super-blocks of 256 elements (Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K),
// byte for byte as ggml-common.h lays them out, and a scalar decoder for each.
//
// A super-block is split into sub-blocks (16 of 16 elements for Q2_K, Q3_K,
// Q6_K; 8 of 32 for Q4_K, Q5_K), each with a small integer scale (and min)
// that multiplies the fp16 super-block scale d (and dmin).
//
// The low bits of the quants are interleaved in 32-byte groups: within each
// 128 elements (Q2_K, Q3_K: one 32-byte group of qs, four 2-bit planes) or 64
// elements (Q4_K, Q5_K: one 32-byte group, two nibbles), element l of plane p
// lives in byte l of the group at bit 2p (or nibble p). The decoders walk the
// elements in that order.
#pragma once

#include <cstdint>

#include "core/fp16.h"
#include "core/host_device.h"
#include "quant/blocks_legacy.h"  // mul_rn

namespace moe {

inline constexpr int kQK = 256;           // QK_K as an int, for array bounds
inline constexpr int kKScaleSize = 12;    // K_SCALE_SIZE: eight 6-bit scales + eight 6-bit mins

// x = (d * sc) * q - (dmin * m), q 2 bits; sc, m 4 bits per 16 elements.
struct BlockQ2_K {
  static constexpr int kElements = kQK;
  uint8_t scales[kQK / 16];  // low nibble: scale, high nibble: min, per 16 elements
  uint8_t qs[kQK / 4];       // 2-bit quants
  uint16_t d;                // fp16 super-block scale for the scales
  uint16_t dmin;             // fp16 super-block scale for the mins
};
static_assert(sizeof(BlockQ2_K) == 84, "block_q2_K is 84 bytes");

// x = (d * (sc - 32)) * (q - 4 * !hbit), q 2 low bits + a high bit; sc 6 bits per 16 elements.
struct BlockQ3_K {
  static constexpr int kElements = kQK;
  uint8_t hmask[kQK / 8];    // high bits: bit p of byte l for plane p (0..7) of element l
  uint8_t qs[kQK / 4];       // low 2 bits
  uint8_t scales[12];        // sixteen 6-bit scales, packed (see q3_k_scale)
  uint16_t d;                // fp16 super-block scale
};
static_assert(sizeof(BlockQ3_K) == 110, "block_q3_K is 110 bytes");

// x = (d * sc) * q - (dmin * m), q 4 bits; sc, m 6 bits per 32 elements.
struct BlockQ4_K {
  static constexpr int kElements = kQK;
  uint16_t d;                     // fp16 super-block scale for the scales
  uint16_t dmin;                  // fp16 super-block scale for the mins
  uint8_t scales[kKScaleSize];    // packed 6-bit scales and mins (see k_scale_min)
  uint8_t qs[kQK / 2];            // 4-bit quants
};
static_assert(sizeof(BlockQ4_K) == 144, "block_q4_K is 144 bytes");

// x = (d * sc) * q - (dmin * m), q 5 bits; sc, m 6 bits per 32 elements.
struct BlockQ5_K {
  static constexpr int kElements = kQK;
  uint16_t d;                     // fp16 super-block scale for the scales
  uint16_t dmin;                  // fp16 super-block scale for the mins
  uint8_t scales[kKScaleSize];    // packed 6-bit scales and mins (see k_scale_min)
  uint8_t qh[kQK / 8];            // fifth bits: bit p of byte l for plane p of element l
  uint8_t qs[kQK / 2];            // low 4 bits
};
static_assert(sizeof(BlockQ5_K) == 176, "block_q5_K is 176 bytes");

// x = (d * sc) * (q - 32), q 6 bits; sc a signed byte per 16 elements.
struct BlockQ6_K {
  static constexpr int kElements = kQK;
  uint8_t ql[kQK / 2];       // low 4 bits
  uint8_t qh[kQK / 4];       // high 2 bits
  int8_t scales[kQK / 16];   // 8-bit signed scales
  uint16_t d;                // fp16 super-block scale
};
static_assert(sizeof(BlockQ6_K) == 210, "block_q6_K is 210 bytes");

// x = d * q; an fp32 scale. Used for activations in dot products.
struct BlockQ8_K {
  static constexpr int kElements = kQK;
  float d;                   // fp32 scale
  int8_t qs[kQK];            // quants
  int16_t bsums[kQK / 16];   // sum of each 16 quants
};
static_assert(sizeof(BlockQ8_K) == 292, "block_q8_K is 292 bytes");

// Scale and min j (0..7) of Q4_K / Q5_K from the 12 packed bytes:
//   bytes 0..3:  scale 0..3 in bits 0..5, high 2 bits of scale 4..7 in bits 6..7
//   bytes 4..7:  min   0..3 in bits 0..5, high 2 bits of min   4..7 in bits 6..7
//   bytes 8..11: low 4 bits of scale 4..7 in bits 0..3, of min 4..7 in bits 4..7
MOE_HD void k_scale_min(int j, const uint8_t* s, int* scale, int* min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = (s[j + 4] & 0x0f) | (s[j - 4] >> 6) << 4;
    *min = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
  }
}

// Scale j (0..15) of Q3_K, a 6-bit value biased by 32:
//   low 4 bits: bytes 0..7, low nibble for j < 8, high nibble of byte j - 8 otherwise
//   high 2 bits: byte 8 + j % 4, at bit 2 * (j / 4)
MOE_HD int q3_k_scale(int j, const uint8_t* s) {
  const int lo = j < 8 ? (s[j] & 0x0f) : (s[j - 8] >> 4);
  const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (lo | hi << 4) - 32;
}

MOE_HD void dequant_block_q2_k(const BlockQ2_K& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  const float dmin = fp16_to_fp32(b.dmin);
  for (int half = 0; half < 2; ++half) {          // 128 elements, 32 bytes of qs each
    const uint8_t* q = b.qs + 32 * half;
    for (int plane = 0; plane < 4; ++plane) {     // bits 2*plane of each byte: 32 elements
      for (int sub = 0; sub < 2; ++sub) {         // 16 elements per scale
        const uint8_t sc = b.scales[8 * half + 2 * plane + sub];
        const float dl = d * static_cast<float>(sc & 0x0f);
        const float ml = mul_rn(dmin, static_cast<float>(sc >> 4));
        for (int l = 0; l < 16; ++l) {
          const int qv = (q[16 * sub + l] >> (2 * plane)) & 3;
          *y++ = mul_rn(dl, static_cast<float>(qv)) - ml;
        }
      }
    }
  }
}

MOE_HD void dequant_block_q3_k(const BlockQ3_K& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  for (int half = 0; half < 2; ++half) {
    const uint8_t* q = b.qs + 32 * half;
    for (int plane = 0; plane < 4; ++plane) {
      const int hbit = 4 * half + plane;          // bit of hmask[l] for this plane
      for (int sub = 0; sub < 2; ++sub) {
        const float dl = d * static_cast<float>(q3_k_scale(8 * half + 2 * plane + sub, b.scales));
        for (int l = 16 * sub; l < 16 * sub + 16; ++l) {
          const int low = (q[l] >> (2 * plane)) & 3;
          const int high_set = (b.hmask[l] >> hbit) & 1;
          *y++ = dl * static_cast<float>(low - (high_set ? 0 : 4));
        }
      }
    }
  }
}

MOE_HD void dequant_block_q4_k(const BlockQ4_K& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  const float dmin = fp16_to_fp32(b.dmin);
  for (int chunk = 0; chunk < 4; ++chunk) {       // 64 elements, 32 bytes of qs each
    const uint8_t* q = b.qs + 32 * chunk;
    for (int nib = 0; nib < 2; ++nib) {           // low nibbles, then high nibbles
      int sc, m;
      k_scale_min(2 * chunk + nib, b.scales, &sc, &m);
      const float dl = d * static_cast<float>(sc);
      const float ml = mul_rn(dmin, static_cast<float>(m));
      for (int l = 0; l < 32; ++l) {
        const int qv = (q[l] >> (4 * nib)) & 0x0f;
        *y++ = mul_rn(dl, static_cast<float>(qv)) - ml;
      }
    }
  }
}

MOE_HD void dequant_block_q5_k(const BlockQ5_K& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  const float dmin = fp16_to_fp32(b.dmin);
  for (int chunk = 0; chunk < 4; ++chunk) {
    const uint8_t* q = b.qs + 32 * chunk;
    for (int nib = 0; nib < 2; ++nib) {
      const int plane = 2 * chunk + nib;          // scale index and bit of qh[l]
      int sc, m;
      k_scale_min(plane, b.scales, &sc, &m);
      const float dl = d * static_cast<float>(sc);
      const float ml = mul_rn(dmin, static_cast<float>(m));
      for (int l = 0; l < 32; ++l) {
        const int qv = ((q[l] >> (4 * nib)) & 0x0f) | ((b.qh[l] >> plane) & 1) << 4;
        *y++ = mul_rn(dl, static_cast<float>(qv)) - ml;
      }
    }
  }
}

// Per 128 elements: 64 bytes of ql, 32 of qh, 8 scales. Element 32 * p + l
// (p = 0..3, l = 0..31) takes nibble p / 2 of ql[l + 32 * (p % 2)], bits
// 2p..2p+1 of qh[l], and scale 2p + l / 16.
MOE_HD void dequant_block_q6_k(const BlockQ6_K& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  for (int half = 0; half < 2; ++half) {
    const uint8_t* ql = b.ql + 64 * half;
    const uint8_t* qh = b.qh + 32 * half;
    const int8_t* sc = b.scales + 8 * half;
    for (int p = 0; p < 4; ++p) {
      for (int l = 0; l < 32; ++l) {
        const int low = (ql[l + 32 * (p % 2)] >> (4 * (p / 2))) & 0x0f;
        const int high = (qh[l] >> (2 * p)) & 3;
        const int qv = (low | high << 4) - 32;
        y[32 * p + l] = d * static_cast<float>(sc[2 * p + l / 16]) * static_cast<float>(qv);
      }
    }
    y += 128;
  }
}

MOE_HD void dequant_block_q8_k(const BlockQ8_K& b, float* y) {
  for (int j = 0; j < kQK; ++j) y[j] = b.d * static_cast<float>(b.qs[j]);
}

}  // namespace moe
