// The row-wise ops DeepSeek-V4 adds to a DeepSeek forward pass, f32 and
// scalar (each is a few hundred values per token; the products around them
// are the matmuls). Written to follow llama.cpp's deepseek4 graph so results
// track it: hyper-connection mixing with Sinkhorn normalisation, the
// compressors' gated block sums, attention with sinks over a window plus
// compressed rows (the indexer's scores and choice are V3.2's,
// cpu/dsa_indexer.h; routing cpu/moe_route.h's; the clamped SwiGLU
// cpu/ops.h's).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/backend.h"  // RopeScalingParams

namespace moe {

// ---- hyper-connections (hc streams of width D) ------------------------------------
// From mixes = fn · RMSNorm(streams) ([(2 + hc) * hc]):
//   pre[h]  = sigmoid(mixes[h] * scale[0] + base[h]) + eps
//   post[h] = 2 sigmoid(mixes[hc + h] * scale[1] + base[hc + h])
//   comb    = Sinkhorn(mixes[2hc + k] * scale[2] + base[2hc + k]), comb[dst + hc * src]:
//             softmax over dst for each src, + eps, normalise columns (sum over src), then
//             iters - 1 times rows (sum over dst) and columns, each sum + eps.
void dsv4_hc_weights(const float* mixes, const float* scale, const float* base, int64_t hc, float eps, int64_t iters,
                     float* pre, float* post, float* comb);
// The head's collapse: pre[h] = sigmoid(mixes[h] * scale[0] + base[h]) + eps.
void dsv4_hc_head_weights(const float* mixes, const float* scale, const float* base, int64_t hc, float eps, float* pre);
// y = sum_h pre[h] * x[h]   (x [hc][D])
void dsv4_hc_collapse(const float* x, const float* pre, int64_t hc, int64_t D, float* y);
// x[dst] = out * post[dst] + sum_src comb[dst + hc * src] * x[src], in place (x [hc][D]);
// `old` is scratch for hc * D values.
void dsv4_hc_expand(const float* out, const float* post, const float* comb, int64_t hc, int64_t D, float* x,
                    float* old);

// ---- RoPE on the last rope_dim values of a head ----------------------------------
// ggml's "normal" rope (adjacent pairs) with theta_i = pos * base^(-2i / rope_dim), on
// v[nope ..], scaled as `s` says; inverse = true turns it back (the attention output's
// de-rotation: ggml_rope_ext_back, the same cos and sin with the sine negated).
void dsv4_rope_tail(float* v, int64_t dim, int64_t rope_dim, int64_t pos, float base, const RopeScalingParams& s,
                    bool inverse);
inline void dsv4_rope_tail(float* v, int64_t dim, int64_t rope_dim, int64_t pos, float base, bool inverse) {
  dsv4_rope_tail(v, dim, rope_dim, pos, base, RopeScalingParams{}, inverse);
}

// ---- compressors -----------------------------------------------------------------
// One compressed row of `dim` values from the block of `ratio` tokens whose
// projections are cur_kv/cur_score ([ratio][coff * dim], scores with the ape
// bias added): per channel c, the softmax over the block's scores of its
// values; with overlap (coff = 2) the previous block's tokens join with the
// first half of the channels (prev_* null for the first block: nothing) and
// the current block's take the second half. Not yet normalised or rotated.
void dsv4_compress_block(const float* prev_kv, const float* prev_score, const float* cur_kv, const float* cur_score,
                         int64_t ratio, int64_t dim, bool overlap, float* out);

// ---- attention -------------------------------------------------------------------
// One token, heads of dim over one shared KV head (K = V): for head h,
//   p_j = exp(scale q_h.k_j - m) / (sum_j exp(scale q_h.k_j - m) + exp(sink_h - m))
//   out_h = sum_j p_j k_j
// over the rows keys[0..n) (pointers into the caches). The reference goes
// head by head (scores: scratch [n]); the fast one key block by key block
// over every head, so each row is read from memory once for all heads, with
// each head's sums in the reference's order (equal results; scores:
// scratch [n_heads * n]).
void dsv4_attention_sinks_ref(const float* q, int64_t n_heads, int64_t dim, const float* const* keys, int64_t n,
                              const float* sinks, float scale, float* scores, float* out);
void dsv4_attention_sinks(const float* q, int64_t n_heads, int64_t dim, const float* const* keys, int64_t n,
                          const float* sinks, float scale, float* scores, float* out);

}  // namespace moe
