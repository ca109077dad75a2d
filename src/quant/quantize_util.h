// Helpers shared by the reference quantizers (quantize.cpp, quantize_k.cpp)
// and the importance-weighted ones (quantize_weighted.cpp), each reproducing
// a piece of ggml-quants.c's arithmetic exactly.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace moe {
struct BlockQ2_K;
struct BlockQ3_K;
struct BlockQ4_K;
struct BlockQ5_K;
struct BlockQ6_K;
}  // namespace moe

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

// ---- Shared by the weighted K quantizers and the IQ ones (quantize_weighted.cpp).

// sum of x[j]^2 in index order, in float, as ggml's sigma2 loops add it.
float sum_squares(const float* x, int64_t n);

// ggml's make_qp_quants: n non-negative values (group scales or mins) to
// codes in [0, nmax] times one scale, by weighted least squares; returns the
// scale. L is uint8_t as in ggml (a negative code wraps modulo 256).
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* qw);

// ---- Searches and block tails shared by the K-quant reference and weighted
// quantizers (defined in quantize_k.cpp). ggml writes the same code twice,
// once per caller; here each exists once.

// Symmetric quantization of n values to [-nmax, nmax-1] (stored + nmax in L)
// with a least-squares search over 18 scale candidates around -nmax/max;
// ggml's make_qx_quants with rmse_type 1. qw are the per-value weights, or
// null for ggml's default x^2.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* qw);

// Asymmetric quantization x ~ scale * L + min with L in [0, nmax] (ggml's
// make_qkx2_quants, and make_qkx3_quants with non-null weights, which only
// spells the degenerate test `max <= min` where this has `max == min`: the
// same after min is clamped to <= 0). Weighted least squares over nstep+1
// candidate iscales around nmax / (max - min); `use_mad` scores by |error|
// instead of error^2. Returns the scale; *neg_min receives -min (>= 0).
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* neg_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);

// Q2_K after d, dmin and scales are set: re-derives each 16-group's codes
// from its rounded scale and min (groups whose scale rounds to 0 keep the
// codes of the search) and packs them.
void finish_block_q2_k(const float* x, uint8_t* L, BlockQ2_K& b);

// Q3_K: packs sixteen 6-bit scales, already biased by 32 (0..63), into
// b.scales; then finish_block_q3_k, once d is set, requantizes as above and
// packs the codes and high bits.
void pack_scales_q3_k(const int8_t* biased, BlockQ3_K& b);
void finish_block_q3_k(const float* x, int8_t* L, BlockQ3_K& b);

// Q4_K / Q5_K: packs the eight 6-bit scales ls and mins lm the way ggml does
// (values over 63 are not clamped here: ggml's weighted Q4_K passes them
// through and its shifts and byte stores truncate them), stores d and dmin
// as fp16, requantizes every group from the rounded values, packs the codes.
void finish_block_q4_k(const float* x, const uint8_t* ls, const uint8_t* lm, float d, float dmin, uint8_t* L,
                       BlockQ4_K& b);
void finish_block_q5_k(const float* x, const uint8_t* ls, const uint8_t* lm, float d, float dmin, uint8_t* L,
                       BlockQ5_K& b);

// One Q6_K super-block; qw null gives quantize_row_q6_K_ref, otherwise the
// 256 weights of quantize_row_q6_K_impl (used as they are: ggml's sigma2
// scaling is commented out there).
void quantize_block_q6_k(const float* x, const float* qw, BlockQ6_K& b);

}  // namespace moe::quant_detail
