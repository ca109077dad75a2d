// The CUDA backend's plain C++ face: no CUDA headers, so tests and CPU code
// can include it. Defined in cuda/*.cu, linked only when CUDA is built
// (MOE_CUDA); callers outside cuda/ reach it through the backend registry.
#pragma once

#include <cstdint>
#include <string>

#include "core/ggml_type.h"

namespace moe {

// Number of usable CUDA devices; 0 when there is no driver or no device.
// Never throws, never prints.
int cuda_device_count();

// "NVIDIA H100 80GB HBM3". Throws moe::Error for a bad index.
std::string cuda_device_name(int device);

// cuBLAS version as major * 10000 + minor * 100 + patch (needs no device).
int cuda_cublas_version();

// Dequantizes n elements of `type` from host memory to host memory on the
// current device: copies in, runs dequantize_launch, copies back. Throws
// moe::Error on bad arguments (as dequantize_row_ref does) or CUDA failure.
void cuda_dequantize_row(GgmlType type, const void* host_src, float* host_dst, int64_t n);

}  // namespace moe
