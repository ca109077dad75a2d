#include "dequantize.cuh"

#include <algorithm>
#include <cstdint>

#include "core/error.h"
#include "cuda_check.h"

namespace moe {

void dequantize_launch(GgmlType type, const void* d_src, float* d_dst, int64_t n,
                       cudaStream_t stream) {
  const GgmlTypeTraits& traits = ggml_type_traits(type);
  ggml_require_supported(type, "dequantize_launch input");
  MOE_ASSERT(n >= 0 && n % traits.block_size == 0,
             "dequantize_launch: %lld elements are not a whole number of %s blocks "
             "(%lld elements each)",
             static_cast<long long>(n), traits.name, static_cast<long long>(traits.block_size));
  if (n == 0) return;
  MOE_ASSERT(d_src != nullptr && d_dst != nullptr, "dequantize_launch: null device pointer");
  MOE_ASSERT(reinterpret_cast<uintptr_t>(d_dst) % alignof(float) == 0,
             "dequantize_launch: output pointer is not 4-byte aligned");

  const bool known = visit_block_format(type, [&]<GgmlType T>() {
    using Block = typename BlockFormat<T>::Block;
    MOE_ASSERT(sizeof(Block) == traits.type_size, "%s: block struct disagrees with the type table",
               traits.name);
    MOE_ASSERT(reinterpret_cast<uintptr_t>(d_src) % alignof(Block) == 0,
               "dequantize_launch: %s input is not %zu-byte aligned", traits.name,
               alignof(Block));
    const int64_t n_blocks = n / BlockFormat<T>::kElements;
    constexpr int kThreads = 256;
    const int64_t grid = std::min<int64_t>((n_blocks + kThreads - 1) / kThreads, 65536);
    dequantize_kernel<T><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(
        static_cast<const Block*>(d_src), d_dst, n_blocks);
    CUDA_CHECK(cudaGetLastError());
  });
  MOE_ASSERT(known, "dequantize_launch: no kernel for type %s", traits.name);
}

}  // namespace moe
