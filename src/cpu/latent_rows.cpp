#include "cpu/latent_rows.h"

#include <cstring>

#include "quant/dequantize.h"
#include "quant/quantize.h"

namespace moe {

namespace {
constexpr int64_t kMaxBlock = 32;  // the largest block of a latent type (q8_0)
}  // namespace

void latent_row_encode(LatentType t, const float* x, int64_t dim, float* dst) {
  const GgmlType g = latent_ggml_type(t);
  const int64_t block = ggml_type_traits(g).block_size, whole = dim / block * block;
  quantize_row_ref(g, x, dst, whole);
  if (whole < dim) {
    float tail[kMaxBlock] = {};
    std::memcpy(tail, x + whole, static_cast<size_t>(dim - whole) * sizeof(float));
    quantize_row_ref(g, tail, reinterpret_cast<uint8_t*>(dst) + ggml_row_size(g, whole), block);
  }
}

void latent_row_decode(LatentType t, const float* src, int64_t dim, float* x) {
  if (const LatentRowDecodeFn fast = latent_row_decode_kernel(t, dim)) return fast(src, dim, x);
  latent_row_decode_ref(t, src, dim, x);
}

void latent_row_decode_ref(LatentType t, const float* src, int64_t dim, float* x) {
  const GgmlType g = latent_ggml_type(t);
  const int64_t block = ggml_type_traits(g).block_size, whole = dim / block * block;
  dequantize_row_ref(g, src, x, whole);
  if (whole < dim) {
    float tail[kMaxBlock];
    dequantize_row_ref(g, reinterpret_cast<const uint8_t*>(src) + ggml_row_size(g, whole), tail, block);
    std::memcpy(x + whole, tail, static_cast<size_t>(dim - whole) * sizeof(float));
  }
}

}  // namespace moe
