// The backend seam: the ops of a DeepSeek forward pass at the level of the
// model (embedding, RMSNorm, products over quantized weights, the MLA steps
// over the latent cache, the router, grouped experts, SwiGLU, add, the output
// head), over buffers the backend owns. The model is written once against
// this interface; src/cpu/ implements it with the CPU kernels, cuda/ with
// CUDA kernels. There is no graph and no scheduler: the model calls the ops
// in order, and a device backend may queue them and return at once (only the
// calls that hand memory to the host wait).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace moe {

// A 2-D buffer [rows][cols] in a backend's memory, rows `stride` elements
// apart. The model passes these around and never reads them; only the
// backend that allocated one touches its data.
template <typename T>
struct DeviceBuf {
  T* data = nullptr;
  int64_t rows = 0, cols = 0, stride = 0;
  Device device;

  T* row(int64_t r) const { return data + r * stride; }
  // The same memory as dense rows of `c` elements (a buffer sized for the
  // largest of several shapes, used for a smaller one).
  DeviceBuf reshaped(int64_t c) const {
    DeviceBuf b = *this;
    b.rows = rows * stride / c;
    b.cols = b.stride = c;
    return b;
  }
  // Rows [r0, r0 + n) of this buffer.
  DeviceBuf rows_from(int64_t r0, int64_t n) const {
    DeviceBuf b = *this;
    b.data = data + r0 * stride;
    b.rows = n;
    return b;
  }
};
using Act = DeviceBuf<float>;    // activations
using Ids = DeviceBuf<int32_t>;  // expert ids of (token, slot)

// Expert gating (GGUF expert_gating_func 1, 2, 4): softmax, sigmoid, or
// DeepSeek-V4's sqrt(softplus(x)).
enum class ScoringFunc { kSoftmax, kSigmoid, kSqrtSoftplus };

// DeepSeekMoE routing (moe_route_topk in src/cpu/moe_route.h is the reference):
//   s      = softmax(logits), sigmoid(logits) or sqrt(softplus(logits))
//   choice = s + bias                         (aux-loss-free balancing, V3; selection only)
//   groups : keep the topk_group best of n_group groups, scored by the sum of
//            their top-2 choices when there is a bias (V3), else their best (V2)
//   ids    = top-k of choice among the kept groups
//   w      = s[ids], normalized to sum 1 if norm_topk_prob, times routed_scaling_factor
struct MoeRouteParams {
  int64_t n_experts = 0;
  int64_t top_k = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  ScoringFunc scoring = ScoringFunc::kSoftmax;
  TensorView bias;  // [n_experts] f32 exp_probs_b, or empty
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.0f;
};

// The shapes and constants of Multi-head Latent Attention (DeepSeek-V2 §2.1).
struct MlaParams {
  int64_t n_heads = 0;
  int64_t kv_lora_rank = 0;      // R: c_kv
  int64_t qk_rope_head_dim = 0;  // P: the rotated part of q and k
  int64_t qk_nope_head_dim = 0;
  int64_t v_head_dim = 0;
  float rms_norm_eps = 0;
  float softmax_scale = 0;       // includes YaRN's mscale correction
  TensorView rope_freqs;         // [qk_rope_head_dim / 2] f32, YaRN-corrected
  float rope_mscale = 1.0f;      // scale of cos/sin
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  int64_t latent_dim() const { return kv_lora_rank + qk_rope_head_dim; }  // a cache row
};

// The element type of the latent cache (-ctk), llama.cpp's names: f32, f16
// or bf16 (half the memory; bf16 keeps f32's range with 8 bits of
// mantissa, f16 11 bits in a narrower range), or q8_0 (blocks of 32 bytes
// with an f16 scale: 8.5 bits per value, 27% of f32's memory).
enum class LatentType { kF32, kBf16, kF16, kQ8_0 };  // values saved in prompt caches: append only
const char* latent_type_name(LatentType t);
// The GGUF type whose rows the cache stores (F32, BF16, F16, Q8_0), so rows
// are written and read with quantize_row_ref and dequantize_row_ref.
GgmlType latent_ggml_type(LatentType t);
// "f32", "f16", "bf16" or "q8_0" (llama.cpp's -ctk spelling); throws naming the flag.
LatentType parse_latent_type(const std::string& s, const char* flag);

// DeepSeek-V3.2's lightning indexer (DeepSeek Sparse Attention): a query
// of index_heads heads scores every cached position's index key,
//   score[s] = sum_h w[h] / sqrt(dim * heads) * ReLU(q[h] . k[s]),
// and MLA attends to the top_k best. Keys and queries are rotated (RoPE,
// NeoX pairs, on the first rope_dim values) and then turned by the
// orthonormal Walsh-Hadamard matrix, as llama.cpp's deepseek32 does.
struct DsaParams {
  int64_t n_heads = 0;
  int64_t head_dim = 0;
  int64_t top_k = 0;
  int64_t rope_dim = 0;
  TensorView rope_freqs;     // [rope_dim / 2] f32 (the model's, YaRN-corrected)
  float rope_mscale = 1.0f;
  float norm_eps = 1e-6f;    // LayerNorm of the keys
  // The stored keys' type (-ctk, as llama.cpp keeps its indexer's keys in
  // the K cache's type): rows of LatentCache::storage_cols(key_type,
  // head_dim) floats; queries and scores stay f32.
  LatentType key_type = LatentType::kF32;
};

// The MLA latent cache: per sequence, layer and cell [RMSNorm(c_kv) |
// RoPE(k_rope)], dim = kv_lora_rank + qk_rope_head_dim values stored as a
// row of latent_ggml_type(type); n_seq * n_layers * n_ctx rows, each
// sequence a slot of its own (the ops take one sequence's view,
// sequence(s), so they never see another's rows). The storage is f32 rows
// of storage_cols() floats holding those bytes.
struct LatentCache {
  Act rows;
  LatentType type = LatentType::kF32;
  int64_t n_layers = 0, n_ctx = 0;  // n_ctx: positions per sequence
  int64_t n_seq = 1;
  // Floats that hold one row of dim values; a q8_0 row ends in a whole
  // block, zeros after dim (the trained model's rows are 80 values).
  static int64_t storage_cols(LatentType t, int64_t dim) {
    const GgmlType g = latent_ggml_type(t);
    const int64_t block = ggml_type_traits(g).block_size;
    return static_cast<int64_t>((ggml_row_size(g, (dim + block - 1) / block * block) + 3) / 4);
  }
  Act layer(int64_t il) const { return rows.rows_from(il * n_ctx, n_ctx); }
  // The slot of sequence s, a cache of one sequence.
  LatentCache sequence(int64_t s) const {
    LatentCache c = *this;
    c.rows = rows.rows_from(s * n_layers * n_ctx, n_layers * n_ctx);
    c.n_seq = 1;
    return c;
  }
  // From one row to the next: values for f32, f16 and bf16 rows, bytes for
  // q8_0 (whose rows are blocks).
  int64_t row_elems() const {
    switch (type) {
      case LatentType::kF32: return rows.stride;
      case LatentType::kBf16: case LatentType::kF16: return 2 * rows.stride;
      case LatentType::kQ8_0: return 4 * rows.stride;
    }
    return rows.stride;
  }
  size_t bytes() const { return static_cast<size_t>(rows.rows * rows.cols) * sizeof(float); }
};

// Which token rows go through which routed expert, sorted by expert so each
// expert's weights are read once per batch (src/runtime/moe_dispatch.h makes
// these). Sorted position p reads activation row in_row[p] and writes output
// row out_row[p]; groups are contiguous runs of positions of one expert,
// whose index is the matrix of the merged expert tensors the backend holds.
struct ExpertGroup {
  int32_t expert;
  int64_t first;
  int64_t count;
};
struct ExpertDispatch {
  std::vector<int32_t> in_row, out_row;  // [positions]
  std::vector<ExpertGroup> groups;
  int64_t n_positions() const { return static_cast<int64_t>(in_row.size()); }
  bool empty() const { return groups.empty(); }
};

// FFN_i(u) = W_down,i (silu(W_gate,i u) * W_up,i u) for each expert i held:
// gate, up [hidden, moe_ffn, n]; down [moe_ffn, hidden, n]. DeepSeek-V4
// clamps its SwiGLU (swiglu_limit > 0): silu(min(g, L)) * clamp(u, -L, L).
struct ExpertWeights {
  TensorView gate, up, down;
  float swiglu_limit = 0.0f;
  bool empty() const { return gate.empty(); }
};

// ---- DeepSeek-V4 ---------------------------------------------------------------------
// Hyper-connections: the residual is hc streams of `width`. Before a
// sub-layer, mixes = fn · RMSNorm(streams) ([(2 + hc) * hc] per token) give
//   pre[h]  = sigmoid(mixes[h] scale[0] + base[h]) + eps      (the sub-layer's input: sum_h pre[h] x[h])
//   post[h] = 2 sigmoid(mixes[hc + h] scale[1] + base[hc + h]) (how its output enters each stream)
//   comb    = Sinkhorn(mixes[2hc ..] scale[2] + base[2hc ..]) (hc x hc, how the streams mix)
// and after it x[dst] = post[dst] out + sum_src comb[dst][src] x[src]. The
// head collapses the streams with pre weights alone (hc mixes, one scale).
struct HyperConnParams {
  int64_t hc = 0, width = 0;
  int64_t sinkhorn_iters = 0;
  float eps = 0;
  TensorView scale, base;  // f32: [3] and [(2 + hc) * hc], or [1] and [hc] for the head
};

// One layer's attention: n_heads queries over one shared KV head (K = V) of
// head_dim, RoPE (adjacent pairs) on its last rope_dim values, attention
// sinks. A token attends to its last `window` raw rows and, with ratio > 0,
// to compressed rows: one per `ratio` tokens (HCA, ratio 128: all of them),
// or for ratio 4 (CSA, overlapping windows of 8 tokens) the index_topk the
// lightning indexer chooses: score[b] = sum_h w[h] ReLU(q_h . key_b),
// w = W_proj h / sqrt(index_dim * index_heads).
// RoPE scaling as ggml's rope_yarn computes it (llama.cpp applies it to V4's
// layers with compressed rows only): theta_e = pos * base^(-2i / rope_dim),
// theta_i = freq_scale * theta_e, theta = theta_i (1 - r) + theta_e r with
// r = ext_factor * ramp(i; corr_low, corr_high) (1 below corr_low: pairs kept,
// 0 above corr_high: interpolated); cos and sin times mscale. The defaults
// are plain RoPE.
struct RopeScalingParams {
  float freq_scale = 1.0f;  // 1 / rope.scaling.factor (linear and YaRN)
  float ext_factor = 0.0f;  // 1 for YaRN
  float corr_low = 0.0f, corr_high = 0.0f;
  float mscale = 1.0f;
};

struct Dsv4AttnParams {
  int64_t n_heads = 0, head_dim = 0, rope_dim = 0;
  int64_t window = 0;
  int64_t ratio = 0;
  float rope_base = 10000.0f;           // q, kv and the output's de-rotation
  float compress_rope_base = 10000.0f;  // compressed rows and the indexer
  RopeScalingParams rope_scaling;       // every rotation of the layer
  // The type the cache stores the raw and compressed rows in (-ctk;
  // LatentCache::storage_cols(type, head_dim) floats a row) and the
  // indexer's keys (storage_cols(type, index_dim)), as llama.cpp keeps both
  // in its K cache's type; the compressors' state stays f32.
  LatentType cache_type = LatentType::kF32;
  float eps = 1e-6f;                    // every RMSNorm
  float scale = 1.0f;                   // of q . k
  int64_t index_heads = 0, index_dim = 0, index_topk = 0;
};

// One sequence's cache of one layer. What grows with the context is one
// row per block (comp, index_keys); the raw rows and the compressors' state
// are rings, position p in row p % rows: the raw ring holds the window and
// a step's tokens, the state rings (a multiple of the ratio, so a block's
// rows are contiguous) the tokens' projections (scores with their position
// bias) until the block and the next one (CSA's overlap) are built.
struct Dsv4LayerCache {
  Act raw;                    // [window + step][head_dim] in the cache type
  Act state_kv, state_score;  // [ring][coff * head_dim], coff 2 for CSA, 1 for HCA
  Act comp;                   // [n_ctx / ratio + 1][head_dim] in the cache type
  Act index_kv, index_score;  // CSA: [ring][2 * index_dim]
  Act index_keys;             // CSA: [n_ctx / 4 + 1][index_dim] in the cache type
};


class Backend {
 public:
  virtual ~Backend() = default;

  // "CPU", "CUDA0", "CPU-device" (a CPU standing in for a device in tests).
  virtual std::string name() const = 0;
  virtual Device device() const = 0;
  // One line: the instruction set, threads, memory.
  virtual std::string describe() const = 0;

  // Whether mla_attention can read a latent cache of this type (checked when
  // a session starts, so an unsupported -ctk fails before any work).
  virtual bool supports_latent_type(LatentType t) const = 0;

  // ---- memory ------------------------------------------------------------------
  // Buffers live as long as the backend. Allocation is for set-up (sessions
  // allocate everything before the first token), never per token.
  virtual Act alloc(int64_t rows, int64_t cols) = 0;
  virtual Ids alloc_ids(int64_t rows, int64_t cols) = 0;
  // `bytes` of weight memory, 64-byte aligned (device copies of weights).
  virtual uint8_t* alloc_weight_bytes(size_t bytes) = 0;
  virtual void copy_from_host(void* dst, const void* src, size_t bytes) = 0;
  // Waits for queued work, then copies.
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  // Waits for everything queued.
  virtual void synchronize() = 0;
  // Weight memory allocated so far (the upload total).
  virtual size_t weight_bytes() const = 0;

  // dst.row(i) = src.row(i) for i < n, both this backend's (a cached
  // prefix copied from one sequence's slot to another's).
  virtual void copy_rows(const Act& src, Act dst, int64_t n) = 0;

  // Rows rows[i] of src (the hidden states of the tokens routed to host
  // experts) into dst[i] on the host, and back: dst.row(rows[i]) = src[i].
  virtual void gather_rows_to_host(const Act& src, const int32_t* rows, int64_t n, float* dst) = 0;
  virtual void scatter_rows_from_host(const float* src, const int32_t* rows, int64_t n, Act dst) = 0;

  // Batch-invariant products: while on, each row of a product (matmul,
  // output_head, grouped_experts, the MLA per-head products) gets the result it would get as the only
  // row, whatever else is in the batch: no kernel whose float order depends
  // on the number of rows. A session turns it on for steps that hold tokens
  // of several sequences, so an answer never depends on its neighbours.
  virtual void set_batch_invariant(bool on) = 0;

  // ---- ops (n: token rows) --------------------------------------------------------
  // x[t] = row tokens[t] of the embedding table, as f32.
  virtual void embed(const TensorView& table, const int32_t* tokens, int64_t n, Act x) = 0;
  // y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w   (y may be x; w empty: no scale)
  virtual void rms_norm(const Act& x, const TensorView& w, float eps, int64_t n, Act y) = 0;
  // y[t] = W x[t], W [in, out] in its stored type.
  virtual void matmul(const TensorView& W, const Act& x, int64_t n, Act y) = 0;
  // x[t] += y[t]
  virtual void add(Act x, const Act& y, int64_t n) = 0;
  // g[t] = silu(g[t]) * u[t]
  virtual void swiglu(Act g, const Act& u, int64_t n) = 0;
  // logits[t] = W x[t] into host memory [n][W.ne[1]] (the output head).
  virtual void output_head(const TensorView& W, const Act& x, int64_t n, float* logits) = 0;

  // MLA over the latent cache for n tokens at positions pos0 .. pos0+n-1,
  // each attending to positions 0 .. its own (causal):
  //   [c_kv | k_rope] = kv_a[t];  cache[pos] = [RMSNorm(c_kv) * kv_norm | RoPE(k_rope, pos)]   (eq. 9, 14)
  virtual void mla_kv_append(const MlaParams& p, const Act& kv_a, const TensorView& kv_norm, LatentCache& cache,
                             int64_t il, int64_t pos0, int64_t n) = 0;
  //   q_abs[t][h] = [W_UK[h]^T q_nope[t][h] | RoPE(q_rope[t][h], pos)]: queries moved into the latent
  //   space, so scores are taken against the cache directly. q [n][heads * qk_head_dim],
  //   wk_b [qk_nope, kv_lora, heads], q_abs [n][heads * (kv_lora + rope)].
  virtual void mla_query_absorb(const MlaParams& p, const Act& q, const TensorView& wk_b, int64_t pos0, int64_t n,
                                Act q_abs) = 0;
  //   K-shift: cached rows of positions [src0, src0+n) move to [dst0, dst0+n) (dst0 < src0), their
  //   rotated part turned from RoPE(k_rope, old) to RoPE(k_rope, new). Position enters the cache only
  //   through k_rope (c_kv carries none), so a shifted row is the row of its token at the new position
  //   as far as this layer's input is the same.
  virtual void mla_kv_shift(const MlaParams& p, LatentCache& cache, int64_t il, int64_t src0, int64_t dst0,
                            int64_t n) = 0;
  //   o_lat[t][h] = sum_s softmax_s(scale * q_abs[t][h] . cache[s]) * c_kv[s],  s <= pos
  virtual void mla_attention(const MlaParams& p, const Act& q_abs, const LatentCache& cache, int64_t il, int64_t pos0,
                             int64_t n, Act o_lat) = 0;
  //   v[t][h] = W_UV[h] o_lat[t][h]; wv_b [kv_lora, v_head, heads], v [n][heads * v_head]   (eq. 18)
  virtual void mla_output_lift(const MlaParams& p, const Act& o_lat, const TensorView& wv_b, int64_t n, Act v) = 0;
  //   DeepSeek Sparse Attention: o_lat as mla_attention gives it, each token over only the cached
  //   positions `selected` names (row t: top_k positions, -1 after the last), none after its own.
  virtual void mla_attention_sparse(const MlaParams& p, const Act& q_abs, const LatentCache& cache, int64_t il,
                                    int64_t pos0, int64_t n, const Ids& selected, Act o_lat) = 0;
  //   Lightning indexer: keys[pos0 + t] = Hadamard(RoPE(LayerNorm(k_raw[t]) * norm + norm_b)),
  //   keys one sequence's [n_ctx][head_dim] rows of one layer (k_raw = W_k h).
  virtual void dsa_keys_append(const DsaParams& p, const Act& k_raw, const TensorView& norm, const TensorView& norm_b,
                               Act keys, int64_t pos0, int64_t n) = 0;
  //   K-shift of index keys: rows [src0, src0+n) move to [dst0, dst0+n), their rotary part turned to
  //   the new positions (under the Hadamard rotation, which is its own inverse).
  virtual void dsa_keys_shift(const DsaParams& p, Act keys, int64_t src0, int64_t dst0, int64_t n) = 0;
  //   selected[t] = the top_k positions s <= pos0 + t by score (all of them when fewer), -1 after;
  //   q_raw [n][heads * head_dim] = W_q c_q (not yet rotated), w [n][heads] = W_proj h.
  virtual void dsa_select(const DsaParams& p, const Act& q_raw, const Act& w, const Act& keys, int64_t pos0, int64_t n,
                          Ids selected) = 0;
  //   Decompressed form, for prompts (src/cpu/mla_decompressed.h): absorb, attention and lift in one,
  //   keys and values rebuilt per head from the cached rows, fewer multiply-adds when many tokens see
  //   the same rows. Whether it pays for n tokens from pos0 here (false: the three ops above).
  virtual bool mla_decompressed_pays(const MlaParams& p, int64_t pos0, int64_t n) const = 0;
  //   v[t][h] = sum_s softmax_s(scale * [q_nope | RoPE(q_rope)][t][h] . [W_UK[h] c_kv[s] | k_rope[s]]) W_UV[h] c_kv[s]
  virtual void mla_attention_decompressed(const MlaParams& p, const Act& q, const TensorView& wk_b,
                                          const TensorView& wv_b, const LatentCache& cache, int64_t il, int64_t pos0,
                                          int64_t n, Act v) = 0;

  // Routing of n tokens from router logits [n][n_experts]: ids, weights [n][top_k].
  virtual void moe_route(const MoeRouteParams& p, const Act& logits, int64_t n, Ids ids, Act weights) = 0;
  // The routed experts of a dispatch: out.row(out_row[p]) = FFN_expert(h.row(in_row[p])).
  virtual void grouped_experts(const ExpertWeights& w, const Act& h, const ExpertDispatch& d, Act out) = 0;
  // out[t] = sum_k weights[t][k] * slot_out[t * top_k + k], in slot order.
  virtual void moe_combine(const Act& slot_out, const Act& weights, int64_t top_k, int64_t n, Act out) = 0;

  // ---- DeepSeek-V4 (structs above) ------------------------------------------------------
  // A backend without these ops refuses deepseek4 sessions when they start.
  virtual bool supports_deepseek4() const { return false; }
  // x[t][s] = e[t] for every stream s.
  virtual void hc_init(const Act& e, int64_t hc, int64_t n, Act x);
  // h[t] = sum_s pre[s] x[t][s]; post [n][hc] and comb [n][hc * hc] kept for hc_post.
  virtual void hc_pre(const HyperConnParams& p, const Act& x, const Act& mixes, int64_t n, Act h, Act post, Act comb);
  // x[t][dst] = post[t][dst] out[t] + sum_src comb[t][dst][src] x[t][src].
  virtual void hc_post(const HyperConnParams& p, const Act& out, const Act& post, const Act& comb, int64_t n, Act x);
  // The head: h[t] = sum_s pre[s] x[t][s] with pre from the head's hc mixes.
  virtual void hc_head(const HyperConnParams& p, const Act& x, const Act& mixes, int64_t n, Act h);
  // n tokens at pos0.. of one sequence: q [n][heads * head_dim] RMSNorm'd per
  // head (no scale) and rotated; kv [n][head_dim] (RMSNorm'd) rotated and
  // written to c.raw at its positions.
  virtual void dsv4_qkv(const Dsv4AttnParams& p, Act q, const Act& kv, Dsv4LayerCache& c, int64_t pos0, int64_t n);
  // A compressor (the layer's, or with `indexer` its indexer's): the tokens'
  // projections kv, score [n][coff * dim] into the state (score + ape[pos %
  // ratio]), then every block they complete: its row = per channel the
  // softmax over the block's (and for CSA the previous block's) scores of
  // its values, RMSNorm'd (norm), rotated to the block's first position.
  virtual void dsv4_compress(const Dsv4AttnParams& p, const Act& kv, const Act& score, const TensorView& ape,
                             const TensorView& norm, bool indexer, Dsv4LayerCache& c, int64_t pos0, int64_t n);
  // CSA: iq [n][index_heads * index_dim] rotated in place, w [n][index_heads]
  // (W_proj h); selected[t] = the index_topk best compressed rows the token
  // sees (all when fewer), -1 after.
  virtual void dsv4_index_select(const Dsv4AttnParams& p, Act iq, const Act& w, const Dsv4LayerCache& c, int64_t pos0,
                                 int64_t n, Ids selected);
  // o [n][heads * head_dim]: attention with sinks over the window's raw rows
  // and the compressed rows (CSA: `selected`'s; HCA: all it sees), each
  // head's output de-rotated at the token's position.
  virtual void dsv4_attention(const Dsv4AttnParams& p, const Act& q, const Dsv4LayerCache& c, const TensorView& sinks,
                              const Ids& selected, int64_t pos0, int64_t n, Act o);
  // Grouped low-rank output: oa[t][g R + r] = (W_oa rows g R + r) . o[t][g gd ..],
  // gd = o.cols / groups, R = wo_a.ne[1] / groups.
  virtual void dsv4_grouped_output(const TensorView& wo_a, int64_t groups, const Act& o, int64_t n, Act oa);
  // Hash routing (DeepSeek-V4's first layers): ids = the token's row of
  // tid2eid ([top_k, vocab] i32; tokens are host memory), weights as
  // moe_route gives them for those ids.
  virtual void moe_route_hashed(const MoeRouteParams& p, const TensorView& tid2eid, const Act& logits,
                                const int32_t* tokens, int64_t n, Ids ids, Act weights);
  // g[t] = silu(min(g, limit)) * clamp(u, -limit, limit)   (limit <= 0: swiglu)
  virtual void swiglu_clamped(Act g, const Act& u, float limit, int64_t n);
};

// Uploads: a backend's own copy of a host tensor (its device tag set), and
// the compacted copy of some experts of a merged [.., .., n_experts] tensor
// (matrix i of the result is expert experts[i]).
TensorView upload_tensor(Backend& be, const TensorView& host);
TensorView upload_experts(Backend& be, const TensorView& host, const std::vector<int32_t>& experts);

}  // namespace moe
