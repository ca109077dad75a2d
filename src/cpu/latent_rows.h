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
// gives them: with the CPU's vector decoder where there is one, else
// latent_row_decode_ref (the scalar reference; the same values).
void latent_row_decode(LatentType t, const float* src, int64_t dim, float* x);
void latent_row_decode_ref(LatentType t, const float* src, int64_t dim, float* x);
// The vector decoder of type t for rows of dim values (latent_rows_avx512.cpp),
// or null (no AVX-512, f32, or a q8_0 row that ends inside a block).
using LatentRowDecodeFn = void (*)(const float* src, int64_t dim, float* x);
LatentRowDecodeFn latent_row_decode_kernel(LatentType t, int64_t dim);

}  // namespace moe
