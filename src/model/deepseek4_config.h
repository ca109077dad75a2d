// DeepSeek-V4 hyper-parameters (GGUF architecture "deepseek4"), read with
// llama.cpp's key names. V4 keeps V3's MoE and q-LoRA but replaces MLA with
// one shared 64..512-wide KV head attended over a sliding window of raw rows
// plus compressed rows (every 4 tokens chosen by an indexer, or every 128),
// and the residual stream with hyper-connections (hc parallel streams).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/backend.h"  // ScoringFunc

namespace moe {

class GgufFile;

// The attention kind of a layer, from compress_ratios[layer]:
//   0   window only: the last sliding_window raw rows;
//   4   CSA: the window plus the index_topk compressed rows (one per 4
//       tokens, overlapping windows of 8) the lightning indexer chooses;
//   128 HCA: the window plus every compressed row (one per 128 tokens).
enum class Dsv4Attention { kWindow, kCsa, kHca };

struct Deepseek4Config {
  std::string architecture;  // "deepseek4"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;        // n_embd, one stream's width
  int64_t num_hidden_layers = 0;  // block_count - nextn_predict_layers
  int64_t num_nextn_predict_layers = 0;
  int64_t max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;

  // Attention: q from the q-LoRA latent, heads of head_dim over one KV head
  // (K = V), RoPE on the last rope_dim values of each head, attention sinks.
  int64_t num_attention_heads = 0;
  int64_t head_dim = 0;
  int64_t rope_dim = 0;
  int64_t q_lora_rank = 0;
  int64_t sliding_window = 0;
  int64_t o_groups = 0;     // grouped low-rank output: heads split into groups
  int64_t o_lora_rank = 0;  // each group projected to this rank
  float rope_theta = 10000.0f;           // window-only layers
  float compress_rope_theta = 160000.0f; // layers with compressed rows
  std::vector<int64_t> compress_ratios;  // [layer]: 0, 4 or 128
  // rope.scaling.*: "none", "linear" or "yarn" (V4's release: YaRN, factor 16
  // over 64k), applied by llama.cpp to the layers with compressed rows only,
  // without YaRN's magnitude correction (its attn_factor cancels it).
  std::string rope_scaling = "none";
  float rope_factor = 1.0f;
  int64_t rope_orig_ctx = 0;  // rope.scaling.original_context_length, else context_length
  float yarn_beta_fast = 32.0f, yarn_beta_slow = 1.0f;  // fixed, as llama.cpp

  // The lightning indexer of CSA layers.
  int64_t index_n_heads = 0;
  int64_t index_head_dim = 0;
  int64_t index_topk = 0;

  // Hyper-connections: hc streams of hidden_size mixed by Sinkhorn-normalised
  // matrices before and after every sub-layer.
  int64_t hc = 0;
  int64_t sinkhorn_iters = 0;
  float hc_eps = 1e-6f;

  // MoE: every layer; the first hash_layers route by a token -> experts table.
  int64_t n_routed_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  int64_t n_shared_experts = 0;
  int64_t hash_layers = 0;
  float routed_scaling_factor = 1.0f;
  bool norm_topk_prob = false;
  ScoringFunc scoring = ScoringFunc::kSqrtSoftplus;  // expert_gating_func 4 (2 sigmoid, 1 softmax)
  std::vector<float> swiglu_clamp_exp;    // [layer] limit of routed experts' SwiGLU (0: none)
  std::vector<float> swiglu_clamp_shexp;  // [layer] of the shared experts'

  static Deepseek4Config from_gguf(const GgufFile& f);

  Dsv4Attention attention_kind(int64_t il) const {
    const int64_t r = compress_ratios[static_cast<size_t>(il)];
    return r == 0 ? Dsv4Attention::kWindow : r == 4 ? Dsv4Attention::kCsa : Dsv4Attention::kHca;
  }
  int64_t compress_ratio(int64_t il) const { return compress_ratios[static_cast<size_t>(il)]; }
  int64_t rope_nope_dim() const { return head_dim - rope_dim; }
  // A compressor's projection width per token, in compressed rows: CSA's
  // blocks (ratio 4) overlap the block before, so its compressors (and the
  // indexer's) project two halves; HCA's one.
  static int64_t compressor_overlap(int64_t ratio) { return ratio == 4 ? 2 : 1; }
  // The scaling of layer il's rotations (plain for window-only layers).
  RopeScalingParams rope_scaling_params(int64_t il) const;
  // Width of the mixing vector of one hyper-connection: pre (hc), post (hc), comb (hc*hc).
  int64_t hc_mix_dim() const { return (2 + hc) * hc; }
  std::string describe() const;
};

}  // namespace moe
