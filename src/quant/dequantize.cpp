#include "quant/dequantize.h"

#include <cstring>

#include "core/error.h"
#include "quant/blocks.h"
#include "quant/blocks_iq.h"

namespace moe {

void dequantize_row_ref(GgmlType type, const void* src, float* dst, int64_t n) {
  const GgmlTypeTraits& traits = ggml_type_traits(type);
  ggml_require_supported(type, "dequantize_row_ref input");
  MOE_ASSERT(n >= 0 && n % traits.block_size == 0,
             "dequantize_row_ref: %lld elements are not a whole number of %s blocks "
             "(%lld elements each)",
             static_cast<long long>(n), traits.name, static_cast<long long>(traits.block_size));
  MOE_ASSERT(n == 0 || (src != nullptr && dst != nullptr),
             "dequantize_row_ref: null pointer for %lld %s elements", static_cast<long long>(n),
             traits.name);

  const bool known = visit_block_format(type, [&]<GgmlType T>() {
    using Format = BlockFormat<T>;
    using Block = typename Format::Block;
    MOE_ASSERT(sizeof(Block) == traits.type_size && Format::kElements == traits.block_size,
               "%s: block struct disagrees with the type table", traits.name);
    const auto* bytes = static_cast<const uint8_t*>(src);
    const int64_t n_blocks = n / Format::kElements;
    for (int64_t i = 0; i < n_blocks; ++i) {
      Block b;  // a copy, so src needs no alignment
      std::memcpy(&b, bytes + i * static_cast<int64_t>(sizeof(Block)), sizeof(Block));
      Format::decode(b, dst + i * Format::kElements);
    }
  });
  if (known) return;
  MOE_ASSERT(is_iq_type(type), "dequantize_row_ref: no decoder for type %s", traits.name);
  const auto* bytes = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n / traits.block_size; ++i)
    iq_dequantize_block(type, bytes + static_cast<size_t>(i) * traits.type_size, dst + i * traits.block_size);
}

std::vector<float> dequantize_tensor_ref(GgmlType type, const void* src, int64_t n_elements) {
  ggml_require_supported(type, "dequantize_tensor_ref input");
  MOE_ASSERT(n_elements >= 0, "dequantize_tensor_ref: negative element count %lld",
             static_cast<long long>(n_elements));
  std::vector<float> out(static_cast<size_t>(n_elements));
  dequantize_row_ref(type, src, out.data(), n_elements);
  return out;
}

}  // namespace moe
