#include "cpu/gemm_f32.h"

namespace moe {

void gemm_f32_ref(const GemmF32Args& g) {
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < g.n; ++j) {
      float s = 0.0f;
      for (int64_t k = 0; k < g.k; ++k) s += g.a[i * g.lda + k] * g.b[k * g.ldb + j];
      g.c[i * g.ldc + j] = s;
    }
}

}  // namespace moe
