// Reference (scalar) dot products, arithmetic as ggml's CPU backend does it:
// integer sums inside each block, one float multiply-add per block (or per
// scale group for the K quants' mins). SIMD versions must match these.
#include "quant/vec_dot.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/quantize.h"

namespace moe {

GgmlType vec_dot_type(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return GgmlType::F32;
    case GgmlType::F16: return GgmlType::F16;
    case GgmlType::BF16: return GgmlType::BF16;
    case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: return GgmlType::Q8_0;
    case GgmlType::Q4_1: case GgmlType::Q5_1: case GgmlType::Q8_1: return GgmlType::Q8_1;
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K:
    case GgmlType::Q6_K: case GgmlType::Q8_K: return GgmlType::Q8_K;
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

int dot32(const int* q, const int8_t* a, int offset) {
  int s = 0;
  for (int j = 0; j < 32; ++j) s += (q[j] - offset) * a[j];
  return s;
}

// Q4_0/Q5_0 (x = d * (q - 2^(bits-1))) against Q8_0, and Q4_1/Q5_1
// (x = d * q + m) against Q8_1, whose s = d * sum(q) carries the min term.
template <int kBits, typename WBlock, typename ABlock>
float dot_quant32(const WBlock* w, const ABlock* a, int64_t nb) {
  constexpr bool kHasMin = sizeof(ABlock) == sizeof(BlockQ8_1);
  constexpr int kOffset = kHasMin ? 0 : 1 << (kBits - 1);
  float sum = 0.0f;
  int q[32];
  for (int64_t i = 0; i < nb; ++i) {
    if constexpr (kBits == 5) unpack_nibbles<5>(w[i].qs, w[i].qh, q);
    else unpack_nibbles<4>(w[i].qs, nullptr, q);
    sum += static_cast<float>(dot32(q, a[i].qs, kOffset)) * (fp16_to_fp32(w[i].d) * fp16_to_fp32(a[i].d));
    if constexpr (kHasMin) sum += fp16_to_fp32(w[i].m) * fp16_to_fp32(a[i].s);
  }
  return sum;
}

// Q8_0 against Q8_0, Q8_1 against Q8_1.
template <typename Block>
float dot_q8(const Block* w, const Block* a, int64_t nb) {
  float sum = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    int s = 0;
    for (int j = 0; j < 32; ++j) s += w[i].qs[j] * a[i].qs[j];
    sum += static_cast<float>(s) * (fp16_to_fp32(w[i].d) * fp16_to_fp32(a[i].d));
  }
  return sum;
}

// ---- K quants: 256-element super-blocks ----------------------------------------

// Sum over sub-blocks of len elements: sc[j] * sum(q * a) and m[j] * bsum.
struct KSums {
  int scaled = 0;  // sum_j sc_j * (q . a)_j
  int mins = 0;    // sum_j m_j * (sum of a)_j
};

KSums ksums(const int* q, const int* sc, const int* m, int len, const BlockQ8_K& a) {
  KSums r;
  for (int j = 0; j < kQK / len; ++j) {
    int s = 0, asum = 0;
    for (int l = 0; l < len; ++l) s += q[j * len + l] * a.qs[j * len + l];
    for (int k = 0; k < len / 16; ++k) asum += a.bsums[j * (len / 16) + k];
    r.scaled += sc[j] * s;
    if (m) r.mins += m[j] * asum;
  }
  return r;
}

float dot_q2_k(const BlockQ2_K* w, const BlockQ8_K* a, int64_t nb) {
  float sum = 0.0f;
  int q[kQK], sc[16], m[16];
  for (int64_t i = 0; i < nb; ++i) {
    for (int e = 0; e < kQK; ++e) {
      const int half = e / 128, j = (e % 128) / 32, l = e % 32;
      q[e] = (w[i].qs[half * 32 + l] >> (2 * j)) & 3;
    }
    for (int j = 0; j < 16; ++j) sc[j] = w[i].scales[j] & 0x0f, m[j] = w[i].scales[j] >> 4;
    const KSums s = ksums(q, sc, m, 16, a[i]);
    sum += a[i].d * fp16_to_fp32(w[i].d) * static_cast<float>(s.scaled) -
           a[i].d * fp16_to_fp32(w[i].dmin) * static_cast<float>(s.mins);
  }
  return sum;
}

float dot_q3_k(const BlockQ3_K* w, const BlockQ8_K* a, int64_t nb) {
  float sum = 0.0f;
  int q[kQK], sc[16];
  for (int64_t i = 0; i < nb; ++i) {
    for (int e = 0; e < kQK; ++e) {
      const int half = e / 128, j = (e % 128) / 32, l = e % 32;
      const int low = (w[i].qs[half * 32 + l] >> (2 * j)) & 3;
      const bool high = (w[i].hmask[l] >> (half * 4 + j)) & 1;
      q[e] = low - (high ? 0 : 4);
    }
    for (int j = 0; j < 16; ++j) sc[j] = q3_k_scale(j, w[i].scales);
    const KSums s = ksums(q, sc, nullptr, 16, a[i]);
    sum += a[i].d * fp16_to_fp32(w[i].d) * static_cast<float>(s.scaled);
  }
  return sum;
}

template <typename Block, bool kFive>
float dot_q45_k(const Block* w, const BlockQ8_K* a, int64_t nb) {
  float sum = 0.0f;
  int q[kQK], sc[8], m[8];
  for (int64_t i = 0; i < nb; ++i) {
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < 32; ++l) {
        int lo = w[i].qs[32 * j + l] & 0x0f, hi = w[i].qs[32 * j + l] >> 4;
        if constexpr (kFive) {
          lo |= ((w[i].qh[l] >> (2 * j)) & 1) << 4;
          hi |= ((w[i].qh[l] >> (2 * j + 1)) & 1) << 4;
        }
        q[64 * j + l] = lo;
        q[64 * j + 32 + l] = hi;
      }
    }
    for (int j = 0; j < 8; ++j) k_scale_min(j, w[i].scales, &sc[j], &m[j]);
    const KSums s = ksums(q, sc, m, 32, a[i]);
    sum += a[i].d * fp16_to_fp32(w[i].d) * static_cast<float>(s.scaled) -
           a[i].d * fp16_to_fp32(w[i].dmin) * static_cast<float>(s.mins);
  }
  return sum;
}

float dot_q6_k(const BlockQ6_K* w, const BlockQ8_K* a, int64_t nb) {
  float sum = 0.0f;
  int q[kQK], sc[16];
  for (int64_t i = 0; i < nb; ++i) {
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = w[i].ql + 64 * half;
      const uint8_t* qh = w[i].qh + 32 * half;
      int* y = q + 128 * half;
      for (int l = 0; l < 32; ++l) {
        y[l] = ((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32;
        y[l + 32] = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
        y[l + 64] = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
        y[l + 96] = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
      }
    }
    for (int j = 0; j < 16; ++j) sc[j] = w[i].scales[j];
    const KSums s = ksums(q, sc, nullptr, 16, a[i]);
    sum += a[i].d * fp16_to_fp32(w[i].d) * static_cast<float>(s.scaled);
  }
  return sum;
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
      const float* x = static_cast<const float*>(w);
      const float* y = static_cast<const float*>(a);
      double s = 0.0;  // ggml_vec_dot_f32 generic: double sum of float products
      for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i] * y[i]);
      return static_cast<float>(s);
    }
    case GgmlType::F16: {
      const uint16_t* x = static_cast<const uint16_t*>(w);
      const uint16_t* y = static_cast<const uint16_t*>(a);
      double s = 0.0;
      for (int64_t i = 0; i < n; ++i) s += static_cast<double>(fp16_to_fp32(x[i]) * fp16_to_fp32(y[i]));
      return static_cast<float>(s);
    }
    case GgmlType::BF16: {
      const uint16_t* x = static_cast<const uint16_t*>(w);
      const uint16_t* y = static_cast<const uint16_t*>(a);
      double s = 0.0;
      for (int64_t i = 0; i < n; ++i) s += static_cast<double>(bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]));
      return static_cast<float>(s);
    }
    case GgmlType::Q4_0:
      return dot_quant32<4>(static_cast<const BlockQ4_0*>(w), static_cast<const BlockQ8_0*>(a), n / 32);
    case GgmlType::Q5_0:
      return dot_quant32<5>(static_cast<const BlockQ5_0*>(w), static_cast<const BlockQ8_0*>(a), n / 32);
    case GgmlType::Q4_1:
      return dot_quant32<4>(static_cast<const BlockQ4_1*>(w), static_cast<const BlockQ8_1*>(a), n / 32);
    case GgmlType::Q5_1:
      return dot_quant32<5>(static_cast<const BlockQ5_1*>(w), static_cast<const BlockQ8_1*>(a), n / 32);
    case GgmlType::Q8_0: return dot_q8(static_cast<const BlockQ8_0*>(w), static_cast<const BlockQ8_0*>(a), n / 32);
    case GgmlType::Q8_1: return dot_q8(static_cast<const BlockQ8_1*>(w), static_cast<const BlockQ8_1*>(a), n / 32);
    case GgmlType::Q2_K: return dot_q2_k(static_cast<const BlockQ2_K*>(w), static_cast<const BlockQ8_K*>(a), n / kQK);
    case GgmlType::Q3_K: return dot_q3_k(static_cast<const BlockQ3_K*>(w), static_cast<const BlockQ8_K*>(a), n / kQK);
    case GgmlType::Q4_K:
      return dot_q45_k<BlockQ4_K, false>(static_cast<const BlockQ4_K*>(w), static_cast<const BlockQ8_K*>(a), n / kQK);
    case GgmlType::Q5_K:
      return dot_q45_k<BlockQ5_K, true>(static_cast<const BlockQ5_K*>(w), static_cast<const BlockQ8_K*>(a), n / kQK);
    case GgmlType::Q6_K: return dot_q6_k(static_cast<const BlockQ6_K*>(w), static_cast<const BlockQ8_K*>(a), n / kQK);
    case GgmlType::Q8_K: return dot_q8_k(static_cast<const BlockQ8_K*>(w), static_cast<const BlockQ8_K*>(a), n / kQK);
    default: throw_error("no dot product for weights of type %s", ggml_type_name(wt));
  }
}

}  // namespace moe
