// Dequantization kernels: one thread per block, running the MOE_HD block
// decoders of quant/blocks.h, so the result equals dequantize_row_ref bit for
// bit. A reference-grade kernel (uncoalesced writes); fused kernels that read
// blocks inside a matmul come later.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/ggml_type.h"
#include "quant/blocks.h"

namespace moe {

// y[i * kElements ..] = decode(x[i]) for i < n_blocks, grid-stride.
template <GgmlType T>
__global__ void dequantize_kernel(const typename BlockFormat<T>::Block* __restrict__ x,
                                  float* __restrict__ y, int64_t n_blocks) {
  using Format = BlockFormat<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_blocks;
       i += stride)
    Format::decode(x[i], y + i * Format::kElements);
}

// Decodes n elements of `type` at device pointer d_src into device pointer
// d_dst on `stream` (asynchronous). Validates the type (one with a decoder),
// n (a whole number of blocks) and the pointers (non-null, aligned for the
// block struct); throws moe::Error otherwise or when the launch fails.
void dequantize_launch(GgmlType type, const void* d_src, float* d_dst, int64_t n,
                       cudaStream_t stream);

}  // namespace moe
