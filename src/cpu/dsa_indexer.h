// DeepSeek-V3.2's lightning indexer on the CPU, scalar (its cost is
// heads x index_dim per cached position against MLA's heads x 1088, and
// it replaces attention over every position by attention over top_k):
// index keys and queries as llama.cpp's deepseek32 builds them, the
// scores, and the top-k choice ggml makes (std::partial_sort by score,
// so ties resolve the same way).
#pragma once

#include <cstdint>

#include "runtime/backend.h"

namespace moe {

// x[0 .. n) = H x with H the orthonormal Walsh-Hadamard matrix of order n
// (a power of two; H[i][j] = (-1)^popcount(i & j) / sqrt(n)), in n log n steps.
void hadamard_inplace(float* x, int64_t n);

// RoPE on the first rope_dim values in NeoX pairs (i, i + rope_dim / 2),
// then the Hadamard rotation of all head_dim values.
void dsa_rotate(const DsaParams& p, float* x, float pos);

// An index key from k_raw = W_k h: LayerNorm (mean 0, variance 1) times
// norm plus norm_b, then dsa_rotate at pos.
void dsa_key(const DsaParams& p, const float* k_raw, const float* norm, const float* norm_b, float pos, float* out);

// A key made at old_pos as made at new_pos: the Hadamard rotation undone
// (it is its own inverse), the rotary pairs turned by the difference of the
// angles (in double, as the latent cache's K-shift), the rotation redone.
void dsa_key_shift(const DsaParams& p, float* x, int64_t old_pos, int64_t new_pos);

// scores[s] = sum_h w[h] / sqrt(head_dim * heads) * ReLU(q[h] . keys[s]) for
// s < n_kv; q [heads][head_dim] rotated, keys stored rows of p.key_type
// key_stride floats apart (an f32 row, or one decoded by
// latent_row_decode). The dot products are dot_f32's (vectorized).
void dsa_scores(const DsaParams& p, const float* q, const float* w, const float* keys, int64_t key_stride, int64_t n_kv,
                float* scores);

// The same scores, vectorized (dsa_indexer_avx512.cpp): a head's products
// summed in order of the index dimension, fused, and the heads' terms in
// another order than the reference's, so scores agree with dsa_scores to
// float rounding (tests/model_dsa_test.cpp states the bound); typed keys are
// decoded a few at a time, exactly as latent_row_decode does. Null without
// AVX-512.
using DsaScoresFn = void (*)(const DsaParams& p, const float* q, const float* w, const float* keys, int64_t key_stride,
                             int64_t n_kv, float* scores);
DsaScoresFn dsa_scores_kernel();

// An f32 key written into a stored row of p.key_type.
void dsa_key_store(const DsaParams& p, const float* key, float* stored);

// The positions of the k best scores of n (all n when n <= k), as ggml's
// top_k picks them; returns how many. order: n ints of scratch.
int64_t dsa_top_k(const float* scores, int64_t n, int64_t k, int32_t* out, int32_t* order);

}  // namespace moe
