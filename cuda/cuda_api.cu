#include "cuda_api.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/error.h"
#include "cuda_check.h"
#include "dequantize.cuh"

namespace moe {
namespace {

// Device memory freed when the scope ends, so a throwing CUDA_CHECK leaks nothing.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) {
    if (bytes > 0) CUDA_CHECK(cudaMalloc(&ptr_, bytes));
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);  // nothing useful to do on failure here
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
};

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the error so later calls do not see it
    return 0;
  }
  return n;
}

std::string cuda_device_name(int device) {
  const int n = cuda_device_count();
  MOE_ASSERT(device >= 0 && device < n, "CUDA device %d does not exist (%d devices)", device, n);
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

int cuda_cublas_version() {
  int major = 0, minor = 0, patch = 0;
  CUBLAS_CHECK(cublasGetProperty(MAJOR_VERSION, &major));
  CUBLAS_CHECK(cublasGetProperty(MINOR_VERSION, &minor));
  CUBLAS_CHECK(cublasGetProperty(PATCH_LEVEL, &patch));
  return major * 10000 + minor * 100 + patch;
}

void cuda_dequantize_row(GgmlType type, const void* host_src, float* host_dst, int64_t n) {
  const GgmlTypeTraits& traits = ggml_type_traits(type);
  ggml_require_supported(type, "cuda_dequantize_row input");
  const size_t src_bytes = ggml_row_size(type, n);
  if (n == 0) return;
  MOE_ASSERT(host_src != nullptr && host_dst != nullptr,
             "cuda_dequantize_row: null pointer for %lld %s elements", static_cast<long long>(n),
             traits.name);
  const size_t dst_bytes = static_cast<size_t>(n) * sizeof(float);

  DeviceBuffer src(src_bytes), dst(dst_bytes);
  CUDA_CHECK(cudaMemcpy(src.get(), host_src, src_bytes, cudaMemcpyHostToDevice));
  dequantize_launch(type, src.get(), static_cast<float*>(dst.get()), n, nullptr);
  CUDA_CHECK(cudaMemcpy(host_dst, dst.get(), dst_bytes, cudaMemcpyDeviceToHost));
}

}  // namespace moe
