// Prompt attention in MLA's decompressed form (DeepSeek-V2 §2.1.1: keys and
// values as the model defines them, not absorbed). Per head h the cached
// latent rows give back
//   k[s][h] = [W_UK[h] c_kv[s] | k_rope[s]],   v[s][h] = W_UV[h] c_kv[s]
// and token t's output is
//   out[t][h] = sum_s softmax_s(scale * [q_nope | RoPE(q_rope)][t][h] . k[s][h]) v[s][h].
// This is the function of the absorbed form (mla_query_absorb, then
// mla_attention over the latent rows, then mla_output_lift) in another
// order. Per (token, cached row, head) it takes qk_nope + rope + v_head
// multiply-adds (320 for V2 and V3) where the absorbed form takes
// kv_lora + rope + kv_lora (1088), and the rebuild costs
// rows x heads x kv_lora x (qk_nope + v_head) once per call: with many
// tokens over the same rows (a prompt) that pays; ik_llama.cpp computes
// prompts this way (its -mla 3) for the same reason. Generation (one token)
// stays absorbed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/thread_pool.h"
#include "cpu/attention_block.h"
#include "cpu/gemm_f32.h"
#include "runtime/backend.h"

namespace moe {

// Whether n tokens from pos0 cost less decompressed than absorbed, by the
// multiply-adds of each (the rebuild's counted at their measured relative
// speed), and the rebuilt rows of one head fit a thread's scratch.
bool mla_decompressed_pays(const MlaParams& p, int64_t pos0, int64_t n);

// Floats of scratch per thread for n tokens from pos0.
size_t mla_decompressed_scratch_floats(const MlaParams& p, int64_t pos0, int64_t n);

struct MlaDecompressedKernels {
  MlaAttendBlockFn attend;  // the f32 block kernel (rows with values after the keys)
  GemmF32Fn gemm;           // the rebuild's products
};

// v[t][h * v_head ..] for tokens t < n at positions pos0 + t (each seeing
// positions 0 .. its own), from q [n][heads * qk_head] (q_rope not yet
// rotated), the weights wk_b [qk_nope, kv_lora, heads] and wv_b
// [kv_lora, v_head, heads] in their stored types, and the cache's rows of
// layer il (any -ctk type; tokens' own rows appended already). Heads are
// the threads' jobs; scratch holds pool.size() times
// mla_decompressed_scratch_floats(p, pos0, n) floats.
void mla_attention_decompressed(const MlaParams& p, const Act& q, const TensorView& wk_b, const TensorView& wv_b,
                                const LatentCache& cache, int64_t il, int64_t pos0, int64_t n, Act v, ThreadPool& pool,
                                float* scratch, const MlaDecompressedKernels& k);

}  // namespace moe
