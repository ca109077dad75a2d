// CUDA_CHECK / CUBLAS_CHECK: wrap every CUDA runtime and cuBLAS call; a
// failure throws moe::Error naming the call, file:line and CUDA's message.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/error.h"

namespace moe {

[[noreturn]] inline void cuda_fail(cudaError_t e, const char* call, const char* file, int line) {
  throw_error("%s:%d: %s failed: %s (%s)", file, line, call, cudaGetErrorString(e),
              cudaGetErrorName(e));
}

[[noreturn]] inline void cublas_fail(cublasStatus_t s, const char* call, const char* file,
                                     int line) {
  throw_error("%s:%d: %s failed: %s (%s)", file, line, call, cublasGetStatusString(s),
              cublasGetStatusName(s));
}

}  // namespace moe

#define CUDA_CHECK(call)                                                   \
  do {                                                                     \
    const cudaError_t moe_cuda_err_ = (call);                              \
    if (moe_cuda_err_ != cudaSuccess)                                      \
      ::moe::cuda_fail(moe_cuda_err_, #call, __FILE__, __LINE__);          \
  } while (0)

#define CUBLAS_CHECK(call)                                                 \
  do {                                                                     \
    const cublasStatus_t moe_cublas_st_ = (call);                          \
    if (moe_cublas_st_ != CUBLAS_STATUS_SUCCESS)                           \
      ::moe::cublas_fail(moe_cublas_st_, #call, __FILE__, __LINE__);       \
  } while (0)
