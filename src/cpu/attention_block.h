// MLA attention for many query tokens at once (prompts): the same sums in
// the same order as mla_attend_heads (attention.h, the scalar reference),
// so the results are equal to the bit, computed as two small f32 matrix
// products per block of query rows: every cached row is loaded once for a
// tile of rows instead of once per head and token.
//
// Rows are (token, head) pairs, token-major. Token t attends to cache rows
// [0, n_kv0 + t) (causal). Scores come in tiles of 4 rows by 4 cached rows
// (16 partial-sum vectors, 8 loads per 16 products); after a softmax per
// row, output tiles of 8 rows by 32 latent columns sum the value rows
// straight from the cache.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moe {

struct MlaAttendBlockArgs {
  const float* q;         // row (t, h) at q + t * q_tok_stride + h * q_head_stride
  int64_t n_tok;
  int64_t n_heads;
  int64_t q_tok_stride;
  int64_t q_head_stride;
  const float* kv;        // cache rows, kv_stride floats apart
  int64_t kv_stride;
  int64_t n_kv0;          // rows token 0 attends to (its position + 1)
  int64_t dim_qk;         // elements of a row scored against q
  int64_t dim_v;          // elements of a row summed into out
  float scale;
  float* scratch;         // mla_attend_block_scratch_floats() floats
  float* out;             // row (t, h) at out + t * out_tok_stride + h * out_head_stride
  int64_t out_tok_stride;
  int64_t out_head_stride;
};

size_t mla_attend_block_scratch_floats(int64_t n_tok, int64_t n_heads, int64_t n_kv0, int64_t dim_qk);

using MlaAttendBlockFn = void (*)(const MlaAttendBlockArgs& a);
// The AVX-512 kernel, or null (then callers take mla_attend_heads per token).
MlaAttendBlockFn mla_attend_block_kernel();

}  // namespace moe
