// MLA attention for many query rows at once, computed in chunks of cached
// rows with a running softmax (FlashAttention, Dao et al. 2022): each chunk's
// scores are taken against the running maximum, the partial output is
// rescaled when the maximum grows, and the sums are divided out at the end.
// No score row spans the whole context, so the work per query row stays in
// cache however long the context grows.
//
// Rows are (token, head) pairs, token-major. Token t attends to cache rows
// [0, n_kv0 + t) (causal). Scores come in tiles of 4 rows by 4 cached rows
// (16 accumulators, 8 loads per 16 fused multiply-adds); output tiles of 8
// rows by 32 latent columns sum the value rows straight from the cache.
//
// Prompts run a block of tokens x heads through every chunk in turn
// (MlaAttendBlockFn). Generation has one token: its cached rows are split
// into parts, the threads compute the parts (MlaAttendRangeFn) and the parts'
// states are merged by their maxima and sums (flash-decoding), so the threads
// share the reading of the cache instead of each reading all of it.
//
// The sums are in another order than the scalar reference, mla_attend_heads
// (attention.h), and products are fused: the results agree with it to about
// 1e-6 relative (tests/cpu_attention_block_test.cpp states the bound).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/ggml_type.h"

namespace moe {

struct MlaAttendBlockArgs {
  const float* q;         // row (t, h) at q + t * q_tok_stride + h * q_head_stride
  int64_t n_tok;
  int64_t n_heads;
  int64_t q_tok_stride;
  int64_t q_head_stride;
  const void* kv;         // cache rows of the kernel's type, kv_stride values apart (bytes for q8_0 rows)
  int64_t kv_stride;
  int64_t n_kv0;          // rows token 0 attends to (its position + 1)
  int64_t dim_qk;         // elements of a row scored against q
  int64_t dim_v;          // elements of a row summed into out
  int64_t v_offset = 0;   // where they start in a row: 0 for the latent cache (c_kv is key and value);
                          // the decompressed form's rows [k | v] have them after the key (f32 kernels only)
  float scale;
  float* scratch;         // mla_attend_block_scratch_floats() floats
  float* out;             // row (t, h) at out + t * out_tok_stride + h * out_head_stride
  int64_t out_tok_stride;
  int64_t out_head_stride;
};

// The running softmax of every query row over the cached rows seen so far:
// max[m] the largest score, sum[m] = sum_s exp(score - max[m]) and
// o[m] = sum_s exp(score - max[m]) * kv[s][v_offset .. v_offset + dim_v).
struct MlaAttendState {
  float* max;  // [rows]
  float* sum;  // [rows]
  float* o;    // [rows][dim_v]
};

// Cached rows per chunk: 128 query rows' scores of one chunk are 32 KiB
// (L1), and the running output is rescaled once per chunk (64 rows of
// 1088 multiply-adds per query row against 512 to rescale: under 1%).
constexpr int64_t kMlaAttendKeyChunk = 64;

// Floats of scratch one call needs: a chunk's scores (and for bf16 rows the
// queries and probabilities in bf16), plus for whole blocks a state.
size_t mla_attend_chunk_scratch_floats(int64_t rows, int64_t dim_qk);
size_t mla_attend_block_scratch_floats(int64_t n_tok, int64_t n_heads, int64_t dim_qk, int64_t dim_v);
// Floats of one state: 2 * rows + rows * dim_v; carve() lays it out.
size_t mla_attend_state_floats(int64_t rows, int64_t dim_v);
MlaAttendState mla_attend_state_carve(float* p, int64_t rows);
void mla_attend_state_init(const MlaAttendState& st, int64_t rows, int64_t dim_v);
// out[m] = (sum_j w_j o_j[m]) / (sum_j w_j sum_j[m]), w_j = exp(max_j[m] - max),
// the parts in order; a part that saw no row of m has max -inf and weight 0.
void mla_attend_merge(const MlaAttendBlockArgs& a, const MlaAttendState* parts, int n_parts);

// Attention of every row of a (all n_tok x n_heads) over all its cached rows.
using MlaAttendBlockFn = void (*)(const MlaAttendBlockArgs& a);
// Adds cached rows [s0, s1) to st (a row whose keys end before s0 keeps its
// state); a.scratch needs mla_attend_block_scratch_floats() floats.
using MlaAttendRangeFn = void (*)(const MlaAttendBlockArgs& a, int64_t s0, int64_t s1, const MlaAttendState& st);
// The AVX-512 kernels over f32 cache rows, or null (then callers take
// mla_attend_heads per token).
MlaAttendBlockFn mla_attend_block_kernel();
MlaAttendRangeFn mla_attend_range_kernel();
// Over bf16 cache rows: queries and probabilities are rounded to bf16 and
// multiplied in pairs with f32 sums (AVX512-BF16's dot product, twice the
// multiply-adds of f32 per instruction); null without AVX512-BF16.
MlaAttendBlockFn mla_attend_block_kernel_bf16();
MlaAttendRangeFn mla_attend_range_kernel_bf16();
// Over f16, bf16 or q8_0 rows (GgmlType::F16, BF16, Q8_0; bf16 for CPUs
// without AVX512-BF16): each chunk of cached rows is
// decoded to f32 (dequantize_row_ref's values) and attended by the f32
// kernel, so the result is the f32 kernels' over the decoded rows, bit for
// bit; null without AVX-512 or for another type.
MlaAttendBlockFn mla_attend_block_kernel_decoded(GgmlType row_type);
MlaAttendRangeFn mla_attend_range_kernel_decoded(GgmlType row_type);

// The kernels for cache rows of a type (F32, BF16, F16, Q8_0); either may
// be null where this CPU has none.
struct MlaAttendKernels {
  MlaAttendBlockFn block;
  MlaAttendRangeFn range;
};
MlaAttendKernels mla_attend_kernels(GgmlType row_type);

}  // namespace moe
