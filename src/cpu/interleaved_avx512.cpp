// matmul_interleaved.h's kernels with AVX-512 VNNI (256-bit registers,
// AVX512VL, AVX512BW's byte masks). Built with those flags for this file
// only; chosen at run time.
#include "cpu/matmul_interleaved.h"

#include "cpu/matmul.h"
#include "cpu/prefetch.h"
#include "cpu/qdot.h"

#if defined(__x86_64__) && defined(__AVX512VNNI__) && defined(__AVX512VL__)
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "core/error.h"

namespace moe {
namespace {

// nt tokens (T = 1 or 2: their per-token state stays in registers).
template <int T>
void dot_r4(const BlockQ4_KR4* x, const BlockQ8_K* const* ys, int64_t nb, float* out) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  // Lanes 2r and 2r + 1 are row r's: its d, and its scale per sub-block.
  const __m256i pairs = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  __m256 acc[T];
  __m128 acc_min[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps(), acc_min[t] = _mm_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const BlockQ4_KR4& b = x[i];
    prefetch_ahead(&b, sizeof(b));
    const __m128 xd = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.d)));
    const __m128 xdmin = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.dmin)));
    __m128i mins[4];
    for (int r = 0; r < 4; ++r) mins[r] = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.mins[r])));
    __m256i isum[T];
    for (int t = 0; t < T; ++t) {
      const BlockQ8_K& y = ys[t][i];
      // Sums of each sub-block's 32 activations, then sum_s m_rs bsum_s per row.
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.bsums));
      const __m128i b8 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
      const __m128i ms = _mm_hadd_epi32(_mm_hadd_epi32(_mm_madd_epi16(mins[0], b8), _mm_madd_epi16(mins[1], b8)),
                                        _mm_hadd_epi32(_mm_madd_epi16(mins[2], b8), _mm_madd_epi16(mins[3], b8)));
      acc_min[t] = _mm_fmadd_ps(_mm_mul_ps(xdmin, _mm_set1_ps(y.d)), _mm_cvtepi32_ps(ms), acc_min[t]);
      isum[t] = _mm256_setzero_si256();
    }
    for (int s = 0; s < 8; ++s) {
      const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs[s]));
      const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs[s] + 32));
      const __m256i w[4] = {_mm256_and_si256(v0, m4), _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4),
                            _mm256_and_si256(v1, m4), _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4)};
      int32_t sc4;
      std::memcpy(&sc4, b.sc[s], 4);
      const __m128i sv = _mm_cvtsi32_si128(sc4);
      const __m256i scale = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(sv, sv));
      for (int t = 0; t < T; ++t) {
        const int8_t* q8 = ys[t][i].qs + 32 * s;
        __m256i sum = _mm256_setzero_si256();
        for (int k = 0; k < 4; ++k) {
          int64_t a8;
          std::memcpy(&a8, q8 + 8 * k, 8);
          sum = _mm256_dpbusd_epi32(sum, w[k], _mm256_set1_epi64x(a8));
        }
        // |sum| < 32 * 15 * 128 and scales < 64: exact in 32 bits.
        isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(sum, scale));
      }
    }
    for (int t = 0; t < T; ++t) {
      const __m128 d4 = _mm_mul_ps(xd, _mm_set1_ps(ys[t][i].d));
      const __m256 dd = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d4), pairs);
      acc[t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(isum[t]), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    const __m256 h = _mm256_hadd_ps(acc[t], acc[t]);  // [r0, r1, ., . | r2, r3, ., .]
    const __m128 rows = _mm_movelh_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    _mm_storeu_ps(out + 4 * t, _mm_sub_ps(rows, acc_min[t]));
  }
}

void dot_r4_kernel(const BlockQ4_KR4* x, const BlockQ8_K* const* ys, int nt, int64_t nb, float* out) {
  MOE_ASSERT(nt == 1 || nt == 2, "q4_k_r4 kernel: %d tokens", nt);
  if (nt == 1) dot_r4<1>(x, ys, nb, out);
  else dot_r4<2>(x, ys, nb, out);
}

// Q8_0_R4 (kFive false) and Q5_0_R4: per block, the four vectors of
// unsigned values, one vpdpbusd each per token, the offset's correction
// subtracted in integers from lane 2r of each row (lanes 2r and 2r + 1 are
// row r's two halves), then one multiply-add by d_r * d_y in float.
template <int T, bool kFive>
void dot_q32_r4(const void* xv, const BlockQ8_0* const* ys, const int32_t* const* sums, int64_t nb, float* out) {
  using Block = std::conditional_t<kFive, BlockQ5_0R4, BlockQ8_0R4>;
  constexpr int kOffset = kFive ? kQ5_0R4Offset : kQ8_0R4Offset;
  const auto* x = static_cast<const Block*>(xv);
  const __m256i m4 = _mm256_set1_epi8(0x0f), bit4 = _mm256_set1_epi8(0x10);
  const __m256i pairs = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const Block& b = x[i];
    prefetch_ahead(&b, sizeof(b));
    const __m128 d4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.d)));
    const __m256 dd = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d4), pairs);
    __m256i w[4];
    if constexpr (kFive) {
      const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs[0]));
      const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs[1]));
      const __m256i lo[4] = {_mm256_and_si256(v0, m4), _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4),
                             _mm256_and_si256(v1, m4), _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4)};
      for (int k = 0; k < 4; ++k) w[k] = _mm256_or_si256(lo[k], _mm256_maskz_mov_epi8(b.hmask[k], bit4));
    } else {
      for (int k = 0; k < 4; ++k) w[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.u[k]));
    }
    for (int t = 0; t < T; ++t) {
      const BlockQ8_0& y = ys[t][i];
      __m256i sum = _mm256_maskz_set1_epi32(0x55, -kOffset * sums[t][i]);
      for (int k = 0; k < 4; ++k) {
        int64_t a8;
        std::memcpy(&a8, y.qs + 8 * k, 8);
        sum = _mm256_dpbusd_epi32(sum, w[k], _mm256_set1_epi64x(a8));
      }
      const __m256 dy = _mm256_set1_ps(_cvtsh_ss(y.d));
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dd, dy), _mm256_cvtepi32_ps(sum), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    const __m256 h = _mm256_hadd_ps(acc[t], acc[t]);  // [r0, r1, ., . | r2, r3, ., .]
    _mm_storeu_ps(out + 4 * t, _mm_movelh_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
  }
}

template <bool kFive>
void dot_q32_r4_kernel(const void* x, const BlockQ8_0* const* ys, const int32_t* const* sums, int nt, int64_t nb,
                       float* out) {
  MOE_ASSERT(nt == 1 || nt == 2, "interleaved kernel: %d tokens", nt);
  if (nt == 1) dot_q32_r4<1, kFive>(x, ys, sums, nb, out);
  else dot_q32_r4<2, kFive>(x, ys, sums, nb, out);
}

}  // namespace

Q4KR4DotFn q4_k_r4_dot_kernel() { return cpu_isa_active() == CpuIsa::kAvx512Vnni ? dot_r4_kernel : nullptr; }

Q32R4DotFn q32_r4_dot_kernel(GgmlType type) {
  if (cpu_isa_active() != CpuIsa::kAvx512Vnni) return nullptr;
  if (type == GgmlType::Q8_0_R4) return dot_q32_r4_kernel<false>;
  if (type == GgmlType::Q5_0_R4) return dot_q32_r4_kernel<true>;
  return nullptr;
}

}  // namespace moe
#else
namespace moe {
Q4KR4DotFn q4_k_r4_dot_kernel() { return nullptr; }
Q32R4DotFn q32_r4_dot_kernel(GgmlType) { return nullptr; }
}  // namespace moe
#endif
