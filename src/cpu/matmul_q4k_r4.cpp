#include "cpu/matmul_q4k_r4.h"

#include <algorithm>

#include "core/error.h"

namespace moe {

void q4_k_r4_rows(const TensorView& W, int64_t r0, int64_t r1, const uint8_t* act, size_t act_row, int64_t n_tok,
                  float* y, int64_t y_stride) {
  MOE_DASSERT(W.type == GgmlType::Q4_K_R4 && W.ne[1] % kR4Rows == 0);
  const Q4KR4DotFn kernel = q4_k_r4_dot_kernel();
  const int64_t nb = W.ne[0] / kQK;
  for (int64_t g = r0 / kR4Rows; g * kR4Rows < r1; ++g) {
    const auto* x = reinterpret_cast<const BlockQ4_KR4*>(W.row(g * kR4Rows));
    for (int64_t t = 0; t < n_tok; t += 2) {
      const int nt = static_cast<int>(std::min<int64_t>(2, n_tok - t));
      const BlockQ8_K* ys[2];
      for (int j = 0; j < nt; ++j) ys[j] = reinterpret_cast<const BlockQ8_K*>(act + static_cast<size_t>(t + j) * act_row);
      float out[2 * kR4Rows];
      if (kernel) kernel(x, ys, nt, nb, out);
      else
        for (int j = 0; j < nt; ++j) q4_k_r4_dot_ref(x, ys[j], nb, out + kR4Rows * j);
      for (int j = 0; j < nt; ++j)
        for (int64_t r = 0; r < kR4Rows; ++r) {
          const int64_t row = g * kR4Rows + r;
          if (row >= r0 && row < r1) y[(t + j) * y_stride + row] = out[kR4Rows * j + r];
        }
    }
  }
}

}  // namespace moe
