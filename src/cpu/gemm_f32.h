// f32 matrix products C = A B with both operands in memory as f32: the
// decompressed MLA's rebuild of keys and values from the latent rows
// (c_kv [rows][kv_lora] times W [kv_lora][qk_nope + v_head]), where the
// weights were decoded once per call and reused across thousands of rows.
#pragma once

#include <cstdint>

namespace moe {

// C[i][j] = sum_k A[i][k] * B[k][j] for i < m, j < n, k < K; row strides
// lda, ldb, ldc in floats. C is written, not added to.
struct GemmF32Args {
  const float* a;
  int64_t lda;
  const float* b;
  int64_t ldb;
  float* c;
  int64_t ldc;
  int64_t m, n, k;
};

// The reference: each C[i][j] summed over k in order, one product at a time.
void gemm_f32_ref(const GemmF32Args& g);

// Tiles of 8 rows x 32 columns of C in 16 AVX-512 accumulators, k in
// order, products fused: C[i][j] agrees with the reference to the rounding
// of a fused against a separate multiply-add per step (about 1e-6
// relative; tests/cpu_gemm_f32_test.cpp states the bound). Null without
// AVX-512.
using GemmF32Fn = void (*)(const GemmF32Args& g);
GemmF32Fn gemm_f32_kernel();

}  // namespace moe
