// The scalar reference dot products of the IQ types against Q8_K: each
// super-block's groups decoded to integers (blocks_iq.h) and multiplied with
// the activations as one integer sum, then scaled once. (IQ4_NL, whose
// blocks are Q8_0's with table values, takes Q8_0's reference in vec_dot.cpp.) The
// SIMD kernels (src/cpu) compute the same integers and the same float steps,
// so they equal this to the bit.
#include "quant/vec_dot_iq.h"

#include "core/error.h"
#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/blocks_iq.h"

namespace moe {

float vec_dot_iq_row(GgmlType t, const void* w, const void* a, int64_t n) {
  const GgmlTypeTraits& tr = ggml_type_traits(t);
  const auto* wb = static_cast<const uint8_t*>(w);
  float sum = 0.0f;
  IqGroup g;
  MOE_ASSERT(t != GgmlType::IQ4_NL, "vec_dot_iq_row: IQ4_NL takes the Q8_0 path (vec_dot_row)");
  const auto* y = static_cast<const BlockQ8_K*>(a);
  for (int64_t i = 0; i < n / 256; ++i) {
    const uint8_t* block = wb + static_cast<size_t>(i) * tr.type_size;
    int32_t s = 0;
    for (int gi = 0; gi < 8; ++gi) {
      iq_decode_group(t, block, gi, g);
      for (int h = 0; h < 2; ++h) {
        int32_t part = 0;
        for (int j = 16 * h; j < 16 * h + 16; ++j) part += g.v[j] * y[i].qs[32 * gi + j];
        s += g.scale[h] * part;
      }
    }
    sum += iq_block_d(t, block) * y[i].d * static_cast<float>(s);
  }
  return iq_fraction(t) * sum;
}

}  // namespace moe
