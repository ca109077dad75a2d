// Reference (scalar) dot products, arithmetic as ggml's CPU backend does it:
// integer sums inside each block, one float multiply-add per block (or per
// scale group for the K quants' mins).
//
// For Q4_0, Q5_0, Q8_0, Q4_K and Q6_K the float part follows ggml's x86 AVX2
// kernels lane by lane: eight float accumulators, lane k fed with the integer
// sum of elements 4k..4k+3 of each 32-element group, a fused multiply-add per
// block, and hsum_float_8's reduction order. The integer sums are exact in
// any order, the float ones are not; mirroring the lanes makes our logits
// equal llama.cpp's on x86 and lets the SIMD kernels (src/cpu/qdot_*) be
// checked against this reference bit for bit.
#include "quant/vec_dot.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/dot_f32.h"
#include "quant/quantize.h"
#include "quant/vec_dot_iq.h"
#include "quant/blocks_iq.h"

namespace moe {

GgmlType vec_dot_type(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return GgmlType::F32;
    case GgmlType::F16: return GgmlType::F16;
    case GgmlType::BF16: return GgmlType::BF16;
    case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: case GgmlType::Q8_0_R4: case GgmlType::Q5_0_R4:
      return GgmlType::Q8_0;
    case GgmlType::Q4_1: case GgmlType::Q5_1: case GgmlType::Q8_1: return GgmlType::Q8_1;
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K:
    case GgmlType::Q6_K: case GgmlType::Q8_K: case GgmlType::Q4_K_R4: return GgmlType::Q8_K;
    case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS: case GgmlType::IQ2_S: case GgmlType::IQ3_XXS:
    case GgmlType::IQ3_S: case GgmlType::IQ1_S: case GgmlType::IQ1_M: case GgmlType::IQ4_XS: return GgmlType::Q8_K;
    case GgmlType::IQ4_NL: case GgmlType::MXFP4: return GgmlType::Q8_0;
    default: throw_error("no dot product for weights of type %s", ggml_type_name(t));
  }
}

namespace {

// Round to nearest, ties to even (what _mm256_round_ps and ggml's
// nearest_int do).
inline int round_even(float v) { return static_cast<int>(std::nearbyint(v)); }

// ggml's x86 quantize_row_q8_0/q8_1: d = amax / 127, values times 127 / amax.
template <typename Block>
void quantize_q8_32(const float* x, Block* y, int64_t nb, bool with_sum) {
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    y[i].d = fp32_to_fp16(d);
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      y[i].qs[j] = static_cast<int8_t>(round_even(x[j] * id));
      sum += y[i].qs[j];
    }
    if constexpr (sizeof(Block) == sizeof(BlockQ8_1)) {
      if (with_sum) reinterpret_cast<BlockQ8_1*>(&y[i])->s = fp32_to_fp16(d * static_cast<float>(sum));
    }
  }
}

// ---- ggml's x86 float accumulation ------------------------------------------

// hsum_float_8: (lanes 4..7 + lanes 0..3), then the upper pair onto the lower.
inline float hsum8(const float* a) {
  const float r0 = (a[0] + a[4]) + (a[2] + a[6]);
  const float r1 = (a[1] + a[5]) + (a[3] + a[7]);
  return r0 + r1;
}

// ---- 32-element blocks ------------------------------------------------------

// Integer quants of one 32-element weight block, low nibbles first.
template <int kBits>
void unpack_nibbles(const uint8_t* qs, const uint8_t* qh, int* q) {
  const uint32_t h = qh ? load_u32_le(qh) : 0;
  for (int j = 0; j < 16; ++j) {
    q[j] = qs[j] & 0x0f;
    q[j + 16] = qs[j] >> 4;
    if (kBits == 5) {
      q[j] |= static_cast<int>((h >> j) & 1u) << 4;
      q[j + 16] |= static_cast<int>((h >> (j + 16)) & 1u) << 4;
    }
  }
}

// Lane k of one 32-element block: sum of (q - offset) * a over elements 4k..4k+3.
inline void lane_sums32(const int* q, const int8_t* a, int offset, int* s) {
  for (int k = 0; k < 8; ++k) {
    s[k] = 0;
    for (int e = 4 * k; e < 4 * k + 4; ++e) s[k] += (q[e] - offset) * a[e];
  }
}

// Q4_0/Q5_0 (x = d * (q - 2^(bits-1))) against Q8_0: ggml's AVX2 lanes.
template <int kBits, typename WBlock>
float dot_quant32_q8_0(const WBlock* w, const BlockQ8_0* a, int64_t nb) {
  float acc[8] = {};
  int q[32], s[8];
  for (int64_t i = 0; i < nb; ++i) {
    if constexpr (kBits == 5) unpack_nibbles<5>(w[i].qs, w[i].qh, q);
    else unpack_nibbles<4>(w[i].qs, nullptr, q);
    lane_sums32(q, a[i].qs, 1 << (kBits - 1), s);
    const float d = fp16_to_fp32(w[i].d) * fp16_to_fp32(a[i].d);
    for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(s[k]), acc[k]);
  }
  return hsum8(acc);
}

// Q4_1/Q5_1 (x = d * q + m) against Q8_1, whose s = d * sum(q) carries the
// min term: ggml's AVX2 lanes, the min terms summed apart in scalar FMAs.
template <int kBits, typename WBlock>
float dot_quant32_q8_1(const WBlock* w, const BlockQ8_1* a, int64_t nb) {
  float acc[8] = {};
  float summs = 0.0f;
  int q[32], s[8];
  for (int64_t i = 0; i < nb; ++i) {
    if constexpr (kBits == 5) unpack_nibbles<5>(w[i].qs, w[i].qh, q);
    else unpack_nibbles<4>(w[i].qs, nullptr, q);
    lane_sums32(q, a[i].qs, 0, s);
    summs = std::fma(fp16_to_fp32(w[i].m), fp16_to_fp32(a[i].s), summs);
    const float d = fp16_to_fp32(w[i].d) * fp16_to_fp32(a[i].d);
    for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(s[k]), acc[k]);
  }
  return hsum8(acc) + summs;
}

// F16 and BF16 rows against activations of the same type: ggml's AVX2 order,
// four 8-lane accumulators over steps of 32 elements (fused multiply-adds),
// folded as (a0 + a2) + (a1 + a3), summed across lanes; the elements past the
// last whole step are added one by one in double.
template <float (*kToF32)(uint16_t)>
float dot_half(const uint16_t* x, const uint16_t* y, int64_t n) {
  float acc[4][8] = {};
  const int64_t np = n / 32 * 32;
  for (int64_t i = 0; i < np; i += 32)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 8; ++l)
        acc[j][l] = std::fma(kToF32(x[i + 8 * j + l]), kToF32(y[i + 8 * j + l]), acc[j][l]);
  float r[8];
  for (int l = 0; l < 8; ++l) r[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  double sum = hsum8(r);
  for (int64_t i = np; i < n; ++i) sum += static_cast<double>(kToF32(x[i]) * kToF32(y[i]));
  return static_cast<float>(sum);
}

// Weight blocks of 32 signed values and one float scale against Q8_0:
// ggml's AVX2 lanes for Q8_0. decode(i, q) writes block i's values to q and
// returns its scale. IQ4_NL and MXFP4 (values from a 16-entry table) take
// this arithmetic too, so one SIMD kernel (Tile32) serves all three; ggml's
// own kernels for those two alternate two accumulators between even and odd
// blocks, which only reorders the float sum.
template <typename Decode>
float dot_bytes32_q8_0(const BlockQ8_0* a, int64_t nb, Decode&& decode) {
  float acc[8] = {};
  int q[32], s[8];
  for (int64_t i = 0; i < nb; ++i) {
    const float dw = decode(i, q);
    lane_sums32(q, a[i].qs, 0, s);
    const float d = dw * fp16_to_fp32(a[i].d);
    for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(s[k]), acc[k]);
  }
  return hsum8(acc);
}

// Q8_0 against Q8_0.
float dot_q8_0(const BlockQ8_0* w, const BlockQ8_0* a, int64_t nb) {
  return dot_bytes32_q8_0(a, nb, [w](int64_t i, int* q) {
    for (int j = 0; j < 32; ++j) q[j] = w[i].qs[j];
    return fp16_to_fp32(w[i].d);
  });
}

// A block of 16-entry-table values (IQ4_NL, MXFP4): byte j holds element j
// in its low nibble and j + 16 in its high one.
inline void table_values32(const int8_t* table, const uint8_t* qs, int* q) {
  for (int j = 0; j < 16; ++j) {
    q[j] = table[qs[j] & 0xf];
    q[j + 16] = table[qs[j] >> 4];
  }
}

// Q8_1 against Q8_1.
float dot_q8_1(const BlockQ8_1* w, const BlockQ8_1* a, int64_t nb) {
  float sum = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    int s = 0;
    for (int j = 0; j < 32; ++j) s += w[i].qs[j] * a[i].qs[j];
    sum += static_cast<float>(s) * (fp16_to_fp32(w[i].d) * fp16_to_fp32(a[i].d));
  }
  return sum;
}

// ---- K quants: 256-element super-blocks ----------------------------------------

// ggml's AVX2 lanes for the K quants with 16-element scales (Q2_K, Q3_K,
// Q6_K): lane k gets, from each 32-element group g, the products of elements
// 4k..4k+3 times the scale of their 16-element half, sc[2g + (k >= 4)].
void lanes_scaled16(const int* q, const int8_t* a, const int* sc, int* sumi) {
  for (int k = 0; k < 8; ++k) sumi[k] = 0;
  for (int g = 0; g < kQK / 32; ++g)
    for (int k = 0; k < 8; ++k) {
      int s = 0;
      for (int e = 4 * k; e < 4 * k + 4; ++e) s += q[32 * g + e] * a[32 * g + e];
      sumi[k] += sc[2 * g + (k >= 4)] * s;
    }
}

// Element e of a Q2_K/Q3_K super-block: its 2 low bits.
inline int low2(const uint8_t* qs, int e) { return (qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3; }

// Q2_K: the mins enter the same eight lanes first, lane k = m_2k * bsum_2k +
// m_2k+1 * bsum_2k+1, then the scaled quants.
float dot_q2_k(const BlockQ2_K* w, const BlockQ8_K* a, int64_t nb) {
  float acc[8] = {};
  int q[kQK], sc[16], sumi[8];
  for (int64_t i = 0; i < nb; ++i) {
    for (int e = 0; e < kQK; ++e) q[e] = low2(w[i].qs, e);
    for (int j = 0; j < 16; ++j) sc[j] = w[i].scales[j] & 0x0f;
    const float d = a[i].d * fp16_to_fp32(w[i].d);
    const float dmin = -a[i].d * fp16_to_fp32(w[i].dmin);
    for (int k = 0; k < 8; ++k) {
      const int m0 = w[i].scales[2 * k] >> 4, m1 = w[i].scales[2 * k + 1] >> 4;
      acc[k] = std::fma(dmin, static_cast<float>(m0 * a[i].bsums[2 * k] + m1 * a[i].bsums[2 * k + 1]), acc[k]);
    }
    lanes_scaled16(q, a[i].qs, sc, sumi);
    for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(sumi[k]), acc[k]);
  }
  return hsum8(acc);
}

float dot_q3_k(const BlockQ3_K* w, const BlockQ8_K* a, int64_t nb) {
  float acc[8] = {};
  int q[kQK], sc[16], sumi[8];
  for (int64_t i = 0; i < nb; ++i) {
    for (int e = 0; e < kQK; ++e) {
      const bool high = (w[i].hmask[e % 32] >> (e / 32)) & 1;
      q[e] = low2(w[i].qs, e) - (high ? 0 : 4);
    }
    for (int j = 0; j < 16; ++j) sc[j] = q3_k_scale(j, w[i].scales);
    lanes_scaled16(q, a[i].qs, sc, sumi);
    const float d = a[i].d * fp16_to_fp32(w[i].d);
    for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(sumi[k]), acc[k]);
  }
  return hsum8(acc);
}

// Q6_K: ggml's AVX2 lanes. The 6-bit quants enter unsigned (0..63); the -32
// offset is subtracted per lane as 32 * (bsum pairs times scales), so lane k
// holds a different partition of the sum than a per-element offset would.
float dot_q6_k(const BlockQ6_K* w, const BlockQ8_K* a, int64_t nb) {
  float acc[8] = {};
  int q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = w[i].ql + 64 * half;
      const uint8_t* qh = w[i].qh + 32 * half;
      int* y = q + 128 * half;
      for (int l = 0; l < 32; ++l) {
        y[l] = (ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4;
        y[l + 32] = (ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4;
        y[l + 64] = (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4;
        y[l + 96] = (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4;
      }
    }
    const int8_t* sc = w[i].scales;
    int sc16[16], sumi[8];
    for (int j = 0; j < 16; ++j) sc16[j] = sc[j];
    lanes_scaled16(q, a[i].qs, sc16, sumi);
    for (int k = 0; k < 8; ++k)
      sumi[k] -= 32 * (a[i].bsums[2 * k] * sc[2 * k] + a[i].bsums[2 * k + 1] * sc[2 * k + 1]);
    const float d = a[i].d * fp16_to_fp32(w[i].d);
    for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(sumi[k]), acc[k]);
  }
  return hsum8(acc);
}

// Q4_K / Q5_K: ggml's AVX2 lanes. The scales as above, 32-element groups;
// the mins as m_2p * (sum of a over group 2p) + m_2p+1 * (group 2p+1): in
// four float lanes for Q4_K, summed to one integer and accumulated in a
// scalar for Q5_K (ggml is built as gnu11, so that multiply-add is fused).
template <typename Block, bool kFive>
float dot_q45_k(const Block* w, const BlockQ8_K* a, int64_t nb) {
  float acc[8] = {}, acc_m[4] = {}, summs = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    int sc[8], m[8];
    for (int j = 0; j < 8; ++j) k_scale_min(j, w[i].scales, &sc[j], &m[j]);
    int sumi[8] = {};
    for (int j = 0; j < 4; ++j) {          // 32 bytes: group 2j low nibbles, 2j+1 high
      const uint8_t* qs = w[i].qs + 32 * j;
      const int8_t* q8 = a[i].qs + 64 * j;
      for (int k = 0; k < 8; ++k) {
        int lo = 0, hi = 0;
        for (int e = 4 * k; e < 4 * k + 4; ++e) {
          int ql = qs[e] & 0x0f, qhi = qs[e] >> 4;
          if constexpr (kFive) {
            ql |= ((w[i].qh[e] >> (2 * j)) & 1) << 4;
            qhi |= ((w[i].qh[e] >> (2 * j + 1)) & 1) << 4;
          }
          lo += ql * q8[e];
          hi += qhi * q8[32 + e];
        }
        sumi[k] += sc[2 * j] * lo + sc[2 * j + 1] * hi;
      }
    }
    const float d = a[i].d * fp16_to_fp32(w[i].d);
    const float dmin = -a[i].d * fp16_to_fp32(w[i].dmin);
    for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(sumi[k]), acc[k]);
    int prod[4];
    for (int p = 0; p < 4; ++p) {
      const int g0 = a[i].bsums[4 * p] + a[i].bsums[4 * p + 1];
      const int g1 = a[i].bsums[4 * p + 2] + a[i].bsums[4 * p + 3];
      prod[p] = m[2 * p] * g0 + m[2 * p + 1] * g1;
    }
    if constexpr (kFive) {
      summs = std::fma(dmin, static_cast<float>((prod[0] + prod[1]) + (prod[2] + prod[3])), summs);
    } else {
      for (int p = 0; p < 4; ++p) acc_m[p] = std::fma(dmin, static_cast<float>(prod[p]), acc_m[p]);
    }
  }
  if constexpr (kFive) return hsum8(acc) + summs;
  return hsum8(acc) + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]));
}

float dot_q8_k(const BlockQ8_K* w, const BlockQ8_K* a, int64_t nb) {
  float sum = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    int s = 0;
    for (int j = 0; j < kQK; ++j) s += w[i].qs[j] * a[i].qs[j];
    sum += w[i].d * a[i].d * static_cast<float>(s);
  }
  return sum;
}

}  // namespace

void quantize_activation_row(GgmlType t, const float* x, void* y, int64_t n) {
  switch (t) {
    case GgmlType::F32: std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float)); return;
    case GgmlType::F16: {
      auto* h = static_cast<uint16_t*>(y);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(x[i]);
      return;
    }
    case GgmlType::BF16: {
      auto* h = static_cast<uint16_t*>(y);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_bf16(x[i]);
      return;
    }
    case GgmlType::Q8_0:
      MOE_ASSERT(n % 32 == 0, "q8_0 activations need a multiple of 32 values, got %lld", static_cast<long long>(n));
      quantize_q8_32(x, static_cast<BlockQ8_0*>(y), n / 32, false);
      return;
    case GgmlType::Q8_1:
      MOE_ASSERT(n % 32 == 0, "q8_1 activations need a multiple of 32 values, got %lld", static_cast<long long>(n));
      quantize_q8_32(x, static_cast<BlockQ8_1*>(y), n / 32, true);
      return;
    case GgmlType::Q8_K:
      MOE_ASSERT(n % kQK == 0, "q8_K activations need a multiple of 256 values, got %lld", static_cast<long long>(n));
      quantize_row_ref(GgmlType::Q8_K, x, y, n);  // the CPU path uses ggml's reference here
      return;
    default: throw_error("cannot quantize activations to %s", ggml_type_name(t));
  }
}

float vec_dot_row(GgmlType wt, const void* w, const void* a, int64_t n) {
  switch (wt) {
    case GgmlType::F32: {
      return dot_f32(static_cast<const float*>(w), static_cast<const float*>(a), n);
    }
    case GgmlType::F16:
      return dot_half<fp16_to_fp32>(static_cast<const uint16_t*>(w), static_cast<const uint16_t*>(a), n);
    case GgmlType::BF16:
      return dot_half<bf16_to_fp32>(static_cast<const uint16_t*>(w), static_cast<const uint16_t*>(a), n);
    case GgmlType::Q4_0:
      return dot_quant32_q8_0<4>(static_cast<const BlockQ4_0*>(w), static_cast<const BlockQ8_0*>(a), n / 32);
    case GgmlType::Q5_0:
      return dot_quant32_q8_0<5>(static_cast<const BlockQ5_0*>(w), static_cast<const BlockQ8_0*>(a), n / 32);
    case GgmlType::Q4_1:
      return dot_quant32_q8_1<4>(static_cast<const BlockQ4_1*>(w), static_cast<const BlockQ8_1*>(a), n / 32);
    case GgmlType::Q5_1:
      return dot_quant32_q8_1<5>(static_cast<const BlockQ5_1*>(w), static_cast<const BlockQ8_1*>(a), n / 32);
    case GgmlType::Q8_0: return dot_q8_0(static_cast<const BlockQ8_0*>(w), static_cast<const BlockQ8_0*>(a), n / 32);
    case GgmlType::Q8_1: return dot_q8_1(static_cast<const BlockQ8_1*>(w), static_cast<const BlockQ8_1*>(a), n / 32);
    case GgmlType::Q2_K: return dot_q2_k(static_cast<const BlockQ2_K*>(w), static_cast<const BlockQ8_K*>(a), n / kQK);
    case GgmlType::Q3_K: return dot_q3_k(static_cast<const BlockQ3_K*>(w), static_cast<const BlockQ8_K*>(a), n / kQK);
    case GgmlType::Q4_K:
      return dot_q45_k<BlockQ4_K, false>(static_cast<const BlockQ4_K*>(w), static_cast<const BlockQ8_K*>(a), n / kQK);
    case GgmlType::Q5_K:
      return dot_q45_k<BlockQ5_K, true>(static_cast<const BlockQ5_K*>(w), static_cast<const BlockQ8_K*>(a), n / kQK);
    case GgmlType::Q6_K: return dot_q6_k(static_cast<const BlockQ6_K*>(w), static_cast<const BlockQ8_K*>(a), n / kQK);
    case GgmlType::Q8_K: return dot_q8_k(static_cast<const BlockQ8_K*>(w), static_cast<const BlockQ8_K*>(a), n / kQK);
    case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS: case GgmlType::IQ2_S: case GgmlType::IQ3_XXS:
    case GgmlType::IQ3_S: case GgmlType::IQ1_S: case GgmlType::IQ1_M: case GgmlType::IQ4_XS:
      return vec_dot_iq_row(wt, w, a, n);
    case GgmlType::IQ4_NL: {
      // Q8_0's blocks with values from a table: Q8_0's arithmetic.
      const auto* x = static_cast<const BlockIQ4_NL*>(w);
      return dot_bytes32_q8_0(static_cast<const BlockQ8_0*>(a), n / 32, [x](int64_t i, int* q) {
        table_values32(kIq4nlValues, x[i].qs, q);
        return fp16_to_fp32(x[i].d);
      });
    }
    case GgmlType::MXFP4: {
      // The same with the doubled E2M1 values and a power-of-two half scale
      // (ggml_vec_dot_mxfp4_q8_0).
      const auto* x = static_cast<const BlockMXFP4*>(w);
      return dot_bytes32_q8_0(static_cast<const BlockQ8_0*>(a), n / 32, [x](int64_t i, int* q) {
        table_values32(kMxfp4Values, x[i].qs, q);
        return e8m0_to_fp32_half(x[i].e);
      });
    }
    default: throw_error("no dot product for weights of type %s", ggml_type_name(wt));
  }
}

}  // namespace moe
