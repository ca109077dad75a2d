// Rows of the MLA latent cache in its stored type (-ctk: f32, f16, bf16,
// q8_0): written from f32 once per token, read back as f32 where a kernel
// cannot read the type itself (the scalar attention, context shifts).
#pragma once

#include <cstdint>

#include "runtime/backend.h"

namespace moe {

// dst (LatentCache::storage_cols(t, dim) floats) = x[0 .. dim) in type t, as
// llama.cpp's quantize_row_*_ref writes it; a q8_0 row's last block is
// padded with zeros.
void latent_row_encode(LatentType t, const float* x, int64_t dim, float* dst);
// x[0 .. dim) = the values of a stored row, exactly as dequantize_row_ref
// gives them.
void latent_row_decode(LatentType t, const float* src, int64_t dim, float* x);

}  // namespace moe
