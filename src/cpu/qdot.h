// Fast dot-product kernels for weight rows against quantized activation rows
// (the block formats of src/quant), chosen once at run time for the CPU:
// AVX-512 VNNI, AVX2 or none. Every kernel returns exactly what the scalar
// reference vec_dot_row returns for each (row, token) pair; the tests check it
// bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/ggml_type.h"

namespace moe {

enum class CpuIsa { kScalar, kAvx2, kAvx512Vnni };

// The best instruction set this CPU supports that the build has kernels for.
CpuIsa cpu_isa_detected();
const char* cpu_isa_name(CpuIsa isa);

// y[t * y_stride + r] = dot(weight row r, activation row t) for r < n_rows,
// t < n_tok. Weight rows are w_stride bytes apart, activation rows (already
// in vec_dot_type(weight type)) a_stride bytes apart; n elements per row.
struct QdotArgs {
  const uint8_t* w;
  size_t w_stride;
  int64_t n_rows;
  const uint8_t* a;
  size_t a_stride;
  int64_t n_tok;
  int64_t n;
  float* y;
  int64_t y_stride;
};
using QdotFn = void (*)(const QdotArgs&);

// The kernel for weights of `type` on `isa`, or nullptr when there is none
// (callers then use the scalar reference).
QdotFn qdot_kernel(GgmlType type, CpuIsa isa);

// Per-ISA tables (qdot_avx2.cpp, qdot_avx512.cpp); nullptr where not built.
QdotFn qdot_kernel_avx2(GgmlType type);
QdotFn qdot_kernel_avx512vnni(GgmlType type);

}  // namespace moe
