// Reference quantization, byte-identical to ggml's quantize_row_*_ref.
//
// Every float operation below happens in the same order and precision as in
// ggml-quants.c, because a one-ulp difference in a scale moves a rounding
// boundary and changes bytes. In particular:
//  * integers that meet a float in an expression are converted to float first,
//    exactly where C's usual arithmetic conversions would do it;
//  * products are never fused into FMAs (the build passes -ffp-contract=off;
//    GCC would otherwise contract a*b+c in C++ under -march=native, and
//    tests/quant_quantize_test.cpp's embedded q5_0 block catches that);
//  * rounding uses the same "add 1.5 * 2^23" trick as ggml's nearest_int
//    (round half to even for |v| < 2^22).
// The legacy (32-element) formats are here; the K formats in quantize_k.cpp.

#include "quant/quantize.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/blocks_iq.h"
#include "quant/quantize_util.h"

namespace moe {

namespace {

using quant_detail::signed_abs_max;
using quant_detail::SignedMax;

void min_max(const float* x, int n, float* mn, float* mx) {
  *mn = FLT_MAX;
  *mx = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    if (x[j] < *mn) *mn = x[j];
    if (x[j] > *mx) *mx = x[j];
  }
}

// Symmetric 4 bits: d = max / -8 so that the largest magnitude maps to -8
// exactly; codes are trunc(x/d + 8.5) clamped to 15.
void quantize_q4_0(const float* x, BlockQ4_0* y, int64_t nb) {
  constexpr int kHalf = QK4_0 / 2;
  for (int64_t i = 0; i < nb; ++i, x += QK4_0) {
    const SignedMax m = signed_abs_max(x, QK4_0);
    const float d = m.max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < kHalf; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[kHalf + j] * id;
      // ggml converts to int8_t first (truncation toward zero), then MIN(15, .).
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x0 + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x1 + 8.5f)));
      y[i].qs[j] = static_cast<uint8_t>(q0 | q1 << 4);
    }
  }
}

// Asymmetric 4 bits: 16 steps spanning [min, max].
void quantize_q4_1(const float* x, BlockQ4_1* y, int64_t nb) {
  constexpr int kHalf = QK4_1 / 2;
  for (int64_t i = 0; i < nb; ++i, x += QK4_1) {
    float mn, mx;
    min_max(x, QK4_1, &mn, &mx);
    const float d = (mx - mn) / ((1 << 4) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(mn);
    for (int j = 0; j < kHalf; ++j) {
      const float x0 = (x[j] - mn) * id;
      const float x1 = (x[kHalf + j] - mn) * id;
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x0 + 0.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x1 + 0.5f)));
      y[i].qs[j] = static_cast<uint8_t>(q0 | q1 << 4);
    }
  }
}

// Symmetric 5 bits: like Q4_0 with -16; the fifth bits go to qh (element j
// -> bit j, element j+16 -> bit j+16), little-endian.
void quantize_q5_0(const float* x, BlockQ5_0* y, int64_t nb) {
  constexpr int kHalf = QK5_0 / 2;
  for (int64_t i = 0; i < nb; ++i, x += QK5_0) {
    const SignedMax m = signed_abs_max(x, QK5_0);
    const float d = m.max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < kHalf; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[kHalf + j] * id;
      const int q0 = std::min(31, static_cast<int>(static_cast<int8_t>(x0 + 16.5f)));
      const int q1 = std::min(31, static_cast<int>(static_cast<int8_t>(x1 + 16.5f)));
      y[i].qs[j] = static_cast<uint8_t>((q0 & 0x0f) | (q1 & 0x0f) << 4);
      qh |= static_cast<uint32_t>((q0 >> 4) & 1) << j;
      qh |= static_cast<uint32_t>((q1 >> 4) & 1) << (j + kHalf);
    }
    for (int b = 0; b < 4; ++b) y[i].qh[b] = static_cast<uint8_t>(qh >> (8 * b));
  }
}

// Asymmetric 5 bits. ggml converts straight to uint8_t here (no clamp).
void quantize_q5_1(const float* x, BlockQ5_1* y, int64_t nb) {
  constexpr int kHalf = QK5_1 / 2;
  for (int64_t i = 0; i < nb; ++i, x += QK5_1) {
    float mn, mx;
    min_max(x, QK5_1, &mn, &mx);
    const float d = (mx - mn) / ((1 << 5) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(mn);
    uint32_t qh = 0;
    for (int j = 0; j < kHalf; ++j) {
      const float x0 = (x[j] - mn) * id;
      const float x1 = (x[kHalf + j] - mn) * id;
      const int q0 = static_cast<uint8_t>(x0 + 0.5f);
      const int q1 = static_cast<uint8_t>(x1 + 0.5f);
      y[i].qs[j] = static_cast<uint8_t>((q0 & 0x0f) | (q1 & 0x0f) << 4);
      qh |= static_cast<uint32_t>((q0 >> 4) & 1) << j;
      qh |= static_cast<uint32_t>((q1 >> 4) & 1) << (j + kHalf);
    }
    for (int b = 0; b < 4; ++b) y[i].qh[b] = static_cast<uint8_t>(qh >> (8 * b));
  }
}

// Symmetric 8 bits: d = amax / 127, codes = roundf(x / d) (half away from zero).
void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK8_0) {
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; ++j) {
      const float a = std::fabs(x[j]);
      amax = amax > a ? amax : a;  // ggml's MAX macro
    }
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK8_0; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
    }
  }
}

// MXFP4, as the OCP spec and ggml choose the scale: with the block's largest
// magnitude 2^k times [1, 2), the E8M0 scale is 2^(k - 2), which puts it in
// [4, 8) of E2M1's range (largest value 6: magnitudes above 7 of it clip).
// In ggml's doubled values the half scale d = 2^(k - 3) and amax / d is in
// [8, 16) against a largest value of 12. Each element takes the nearest of
// the 16 values, the first index winning a tie (+0 over -0). ggml casts the
// exponent float -> uint8_t, undefined when it is out of range (amax below
// 2^-125 or infinite); x86 converts through int32, as here.
int best_index_mxfp4(float x, float d) {
  int best = 0;
  float best_err = std::fabs(static_cast<float>(kMxfp4Values[0]) * d - x);
  for (int i = 1; i < 16; ++i) {
    const float err = std::fabs(static_cast<float>(kMxfp4Values[i]) * d - x);
    if (err < best_err) {
      best = i;
      best_err = err;
    }
  }
  return best;
}

void quantize_mxfp4(const float* x, BlockMXFP4* y, int64_t nb) {
  constexpr int kHalf = QK_MXFP4 / 2;
  for (int64_t i = 0; i < nb; ++i, x += QK_MXFP4) {
    const float amax = signed_abs_max(x, QK_MXFP4).amax;
    const uint8_t e =
        amax > 0.0f ? static_cast<uint8_t>(static_cast<int32_t>(std::floor(std::log2(amax)) - 2 + 127)) : 0;
    const float d = e8m0_to_fp32_half(e);
    y[i].e = e;
    for (int j = 0; j < kHalf; ++j) {
      const int q0 = best_index_mxfp4(x[j], d);
      const int q1 = best_index_mxfp4(x[kHalf + j], d);
      y[i].qs[j] = static_cast<uint8_t>(q0 | q1 << 4);
    }
  }
}

void check_blocks(GgmlType type, int64_t n, int64_t block) {
  MOE_ASSERT(n >= 0 && n % block == 0, "quantize %s: %lld elements is not a multiple of the block size %lld",
             ggml_type_name(type), static_cast<long long>(n), static_cast<long long>(block));
}

}  // namespace

bool quantize_supported(GgmlType type) {
  switch (type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16:
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1:
    case GgmlType::Q8_0:
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K:
    case GgmlType::Q6_K: case GgmlType::Q8_K: case GgmlType::MXFP4:
      return true;
    default:
      return false;
  }
}

void quantize_row_ref(GgmlType type, const float* x, void* y, int64_t n) {
  MOE_ASSERT(quantize_supported(type), "quantize: type %s is not supported", ggml_type_name(type));
  const int64_t block = ggml_type_traits(type).block_size;
  check_blocks(type, n, block);
  const int64_t nb = n / block;
  switch (type) {
    case GgmlType::F32:
      if (n > 0) std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case GgmlType::F16: {
      auto* out = static_cast<uint16_t*>(y);
      for (int64_t i = 0; i < n; ++i) out[i] = fp32_to_fp16(x[i]);
      return;
    }
    case GgmlType::BF16: {
      auto* out = static_cast<uint16_t*>(y);
      for (int64_t i = 0; i < n; ++i) out[i] = fp32_to_bf16(x[i]);
      return;
    }
    case GgmlType::Q4_0: return quantize_q4_0(x, static_cast<BlockQ4_0*>(y), nb);
    case GgmlType::Q4_1: return quantize_q4_1(x, static_cast<BlockQ4_1*>(y), nb);
    case GgmlType::Q5_0: return quantize_q5_0(x, static_cast<BlockQ5_0*>(y), nb);
    case GgmlType::Q5_1: return quantize_q5_1(x, static_cast<BlockQ5_1*>(y), nb);
    case GgmlType::Q8_0: return quantize_q8_0(x, static_cast<BlockQ8_0*>(y), nb);
    case GgmlType::MXFP4: return quantize_mxfp4(x, static_cast<BlockMXFP4*>(y), nb);
    case GgmlType::Q2_K: return quant_detail::quantize_rows_q2_k(x, static_cast<BlockQ2_K*>(y), nb);
    case GgmlType::Q3_K: return quant_detail::quantize_rows_q3_k(x, static_cast<BlockQ3_K*>(y), nb);
    case GgmlType::Q4_K: return quant_detail::quantize_rows_q4_k(x, static_cast<BlockQ4_K*>(y), nb);
    case GgmlType::Q5_K: return quant_detail::quantize_rows_q5_k(x, static_cast<BlockQ5_K*>(y), nb);
    case GgmlType::Q6_K: return quant_detail::quantize_rows_q6_k(x, static_cast<BlockQ6_K*>(y), nb);
    case GgmlType::Q8_K: return quant_detail::quantize_rows_q8_k(x, static_cast<BlockQ8_K*>(y), nb);
    default: break;
  }
  throw_error("quantize: type %s is not supported", ggml_type_name(type));
}

namespace {

// One row of a type with a per-row quantizer.
template <typename Block>
using RowQuantizer = void (*)(const float*, Block*, int64_t, const float*);

template <typename Block>
void each_row(RowQuantizer<Block> f, const float* x, void* y, int64_t nrows, int64_t n_per_row, const float* w) {
  auto* out = static_cast<Block*>(y);
  const int64_t blocks_per_row = n_per_row / Block::kElements;
  for (int64_t r = 0; r < nrows; ++r) f(x + r * n_per_row, out + r * blocks_per_row, n_per_row, w);
}

}  // namespace

bool quantize_rows_supported(GgmlType type) {
  switch (type) {
    case GgmlType::IQ4_NL: case GgmlType::IQ4_XS: case GgmlType::IQ3_XXS: case GgmlType::IQ3_S:
    case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS: case GgmlType::IQ2_S: case GgmlType::IQ1_S: case GgmlType::IQ1_M:
      return true;
    default:
      return quantize_supported(type);
  }
}

bool quantize_requires_imatrix(GgmlType type) {
  return type == GgmlType::IQ2_XXS || type == GgmlType::IQ2_XS || type == GgmlType::IQ1_S || type == GgmlType::IQ1_M;
}

void quantize_rows(GgmlType type, const float* x, void* y, int64_t nrows, int64_t n_per_row, const float* imatrix) {
  MOE_ASSERT(quantize_rows_supported(type), "quantize: type %s is not supported", ggml_type_name(type));
  check_blocks(type, n_per_row, ggml_type_traits(type).block_size);
  MOE_ASSERT(imatrix || !quantize_requires_imatrix(type), "quantize %s: an importance matrix is required",
             ggml_type_name(type));
  using namespace quant_detail;
  switch (type) {
    case GgmlType::IQ4_NL: return each_row<BlockIQ4_NL>(quantize_row_iq4_nl, x, y, nrows, n_per_row, imatrix);
    case GgmlType::IQ4_XS: return each_row<BlockIQ4_XS>(quantize_row_iq4_xs, x, y, nrows, n_per_row, imatrix);
    case GgmlType::IQ3_XXS: return each_row<BlockIQ3_XXS>(quantize_row_iq3_xxs, x, y, nrows, n_per_row, imatrix);
    case GgmlType::IQ3_S: return each_row<BlockIQ3_S>(quantize_row_iq3_s, x, y, nrows, n_per_row, imatrix);
    case GgmlType::IQ2_XXS: return each_row<BlockIQ2_XXS>(quantize_row_iq2_xxs, x, y, nrows, n_per_row, imatrix);
    case GgmlType::IQ2_XS: return each_row<BlockIQ2_XS>(quantize_row_iq2_xs, x, y, nrows, n_per_row, imatrix);
    case GgmlType::IQ2_S: return each_row<BlockIQ2_S>(quantize_row_iq2_s, x, y, nrows, n_per_row, imatrix);
    case GgmlType::IQ1_S: return each_row<BlockIQ1_S>(quantize_row_iq1_s, x, y, nrows, n_per_row, imatrix);
    case GgmlType::IQ1_M: return each_row<BlockIQ1_M>(quantize_row_iq1_m, x, y, nrows, n_per_row, imatrix);
    default: break;
  }
  // ggml quantizes the K and legacy types without weights by the reference
  // code, and Q8_0, MXFP4 and the float types ignore them (quantize_mxfp4
  // takes quant_weights and never reads them: its scale is the block's amax
  // exponent and each element is rounded to nearest, nothing to weigh).
  if (!imatrix || type == GgmlType::Q8_0 || type == GgmlType::Q8_K || type == GgmlType::MXFP4 ||
      type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16)
    return quantize_row_ref(type, x, y, nrows * n_per_row);
  switch (type) {
    case GgmlType::Q4_0: return each_row<BlockQ4_0>(quantize_row_q4_0_weighted, x, y, nrows, n_per_row, imatrix);
    case GgmlType::Q4_1: return each_row<BlockQ4_1>(quantize_row_q4_1_weighted, x, y, nrows, n_per_row, imatrix);
    case GgmlType::Q5_0: return each_row<BlockQ5_0>(quantize_row_q5_0_weighted, x, y, nrows, n_per_row, imatrix);
    case GgmlType::Q5_1: return each_row<BlockQ5_1>(quantize_row_q5_1_weighted, x, y, nrows, n_per_row, imatrix);
    case GgmlType::Q2_K: return each_row<BlockQ2_K>(quantize_row_q2_k_weighted, x, y, nrows, n_per_row, imatrix);
    case GgmlType::Q3_K: return each_row<BlockQ3_K>(quantize_row_q3_k_weighted, x, y, nrows, n_per_row, imatrix);
    case GgmlType::Q4_K: return each_row<BlockQ4_K>(quantize_row_q4_k_weighted, x, y, nrows, n_per_row, imatrix);
    case GgmlType::Q5_K: return each_row<BlockQ5_K>(quantize_row_q5_k_weighted, x, y, nrows, n_per_row, imatrix);
    case GgmlType::Q6_K: return each_row<BlockQ6_K>(quantize_row_q6_k_weighted, x, y, nrows, n_per_row, imatrix);
    default: break;
  }
  throw_error("quantize: type %s is not supported", ggml_type_name(type));
}

}  // namespace moe
