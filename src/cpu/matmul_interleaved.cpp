#include "cpu/matmul_interleaved.h"

#include <algorithm>

#include "core/error.h"
#include "quant/interleaved.h"

namespace moe {

namespace {

// Writes the rows of group g that fall in [r0, r1) for nt tokens from t.
void store_group(const float* out, int64_t g, int nt, int64_t t, int64_t r0, int64_t r1, float* y, int64_t y_stride) {
  for (int j = 0; j < nt; ++j)
    for (int64_t r = 0; r < kInterleavedRows; ++r) {
      const int64_t row = g * kInterleavedRows + r;
      if (row >= r0 && row < r1) y[(t + j) * y_stride + row] = out[kInterleavedRows * j + r];
    }
}

void q4_k_rows(const TensorView& W, int64_t r0, int64_t r1, const uint8_t* act, size_t act_row, int64_t n_tok,
               float* y, int64_t y_stride) {
  const Q4KR4DotFn kernel = q4_k_r4_dot_kernel();
  const int64_t nb = W.ne[0] / kQK;
  for (int64_t g = r0 / kInterleavedRows; g * kInterleavedRows < r1; ++g) {
    const auto* x = reinterpret_cast<const BlockQ4_KR4*>(W.row(g * kInterleavedRows));
    for (int64_t t = 0; t < n_tok; t += 2) {
      const int nt = static_cast<int>(std::min<int64_t>(2, n_tok - t));
      const BlockQ8_K* ys[2];
      for (int j = 0; j < nt; ++j) ys[j] = reinterpret_cast<const BlockQ8_K*>(act + static_cast<size_t>(t + j) * act_row);
      float out[2 * kInterleavedRows];
      if (kernel) kernel(x, ys, nt, nb, out);
      else
        for (int j = 0; j < nt; ++j) q4_k_r4_dot_ref(x, ys[j], nb, out + kInterleavedRows * j);
      store_group(out, g, nt, t, r0, r1, y, y_stride);
    }
  }
}

// Q8_0_R4 and Q5_0_R4: the kernels take each activation block's sum (the
// offset's correction), computed here once per token for all the groups.
template <typename Block>
void q32_rows(const TensorView& W, int64_t r0, int64_t r1, const uint8_t* act, size_t act_row, int64_t n_tok, float* y,
              int64_t y_stride, void (*ref)(const Block*, const BlockQ8_0*, int64_t, float*)) {
  const Q32R4DotFn kernel = q32_r4_dot_kernel(W.type);
  const int64_t nb = W.ne[0] / 32;
  constexpr int64_t kMaxSums = 4096;  // on the stack: tokens are taken in chunks that fit
  MOE_ASSERT(2 * nb <= kMaxSums, "'%s': rows of %lld values are longer than the interleaved kernels take",
             W.name.c_str(), static_cast<long long>(W.ne[0]));
  int32_t sums[kMaxSums];
  const int64_t chunk = std::max<int64_t>(2, kMaxSums / nb / 2 * 2);
  for (int64_t t0 = 0; t0 < n_tok; t0 += chunk) {
    const int64_t t1 = std::min(n_tok, t0 + chunk);
    for (int64_t t = t0; t < t1; ++t) {
      const auto* a = reinterpret_cast<const BlockQ8_0*>(act + static_cast<size_t>(t) * act_row);
      for (int64_t i = 0; i < nb; ++i) {
        int32_t s = 0;
        for (int e = 0; e < 32; ++e) s += a[i].qs[e];
        sums[(t - t0) * nb + i] = s;
      }
    }
    for (int64_t g = r0 / kInterleavedRows; g * kInterleavedRows < r1; ++g) {
      const auto* x = reinterpret_cast<const Block*>(W.row(g * kInterleavedRows));
      for (int64_t t = t0; t < t1; t += 2) {
        const int nt = static_cast<int>(std::min<int64_t>(2, t1 - t));
        const BlockQ8_0* ys[2];
        const int32_t* ss[2];
        for (int j = 0; j < nt; ++j) {
          ys[j] = reinterpret_cast<const BlockQ8_0*>(act + static_cast<size_t>(t + j) * act_row);
          ss[j] = sums + (t + j - t0) * nb;
        }
        float out[2 * kInterleavedRows];
        if (kernel) kernel(x, ys, ss, nt, nb, out);
        else
          for (int j = 0; j < nt; ++j) ref(x, ys[j], nb, out + kInterleavedRows * j);
        store_group(out, g, nt, t, r0, r1, y, y_stride);
      }
    }
  }
}

}  // namespace

void interleaved_rows(const TensorView& W, int64_t r0, int64_t r1, const uint8_t* act, size_t act_row, int64_t n_tok,
                      float* y, int64_t y_stride) {
  MOE_DASSERT(W.ne[1] % kInterleavedRows == 0);
  switch (W.type) {
    case GgmlType::Q4_K_R4: return q4_k_rows(W, r0, r1, act, act_row, n_tok, y, y_stride);
    case GgmlType::Q8_0_R4: return q32_rows<BlockQ8_0R4>(W, r0, r1, act, act_row, n_tok, y, y_stride, q8_0_r4_dot_ref);
    case GgmlType::Q5_0_R4: return q32_rows<BlockQ5_0R4>(W, r0, r1, act, act_row, n_tok, y, y_stride, q5_0_r4_dot_ref);
    default: throw_error("'%s': %s is not an interleaved type", W.name.c_str(), ggml_type_name(W.type));
  }
}

}  // namespace moe
