// DeepSeek-V4 weights bound by name from a GGUF file (llama.cpp's names and
// layout), shapes checked at load. Shapes use ggml order: [in, out(, n)].
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/deepseek4_config.h"
#include "model/tensor_binder.h"
#include "runtime/expert_placement.h"

namespace moe {

class GgufFile;

// One hyper-connection (before a sub-layer): mixes = fn · RMSNorm(flat
// streams); pre = sigmoid(mixes[0:hc] * scale[0] + base) + eps weighs the
// streams into the sub-layer's input; post = 2 sigmoid(..scale[1]..) spreads
// its output back; comb (hc x hc, scale[2]) Sinkhorn-normalised mixes the
// streams themselves.
struct HyperConnWeights {
  TensorView fn;     // [hc * hidden, (2 + hc) * hc]
  TensorView base;   // [(2 + hc) * hc] f32
  TensorView scale;  // [3] f32
};

// A compressor: every `ratio` tokens one row, the softmax-gated (per
// channel) sum of its tokens' projections, RMSNorm'd and rotated. CSA's
// windows overlap (each row also reads the previous block with the first
// half of the channels), so its projections are twice as wide.
struct CompressorWeights {
  TensorView wkv;    // [hidden, coff * dim]
  TensorView wgate;  // [hidden, coff * dim]
  TensorView ape;    // [coff * dim, ratio] f32: score bias by position in the block
  TensorView norm;   // [dim] f32
};

struct Dsv4IndexerWeights {
  TensorView wq_b;   // [q_lora_rank, index_heads * index_dim]
  TensorView proj;   // [hidden, index_heads]
  CompressorWeights keys;
};

struct Dsv4FfnWeights {  // W_down(clamped_silu(W_gate x) * clamp(W_up x))
  TensorView gate, up, down;
};

struct Dsv4LayerWeights {
  HyperConnWeights hc_attn, hc_ffn;
  TensorView attn_norm;      // [hidden] f32
  TensorView sinks;          // [heads] f32
  TensorView wq_a;           // [hidden, q_lora_rank]
  TensorView q_a_norm;       // [q_lora_rank] f32
  TensorView wq_b;           // [q_lora_rank, heads * head_dim]
  TensorView wkv;            // [hidden, head_dim]
  TensorView kv_norm;        // [head_dim] f32
  TensorView wo_a;           // [heads * head_dim / groups, groups * o_lora_rank]: group g -> rows g*R..
  TensorView wo_b;           // [groups * o_lora_rank, hidden]
  std::optional<CompressorWeights> compressor;  // CSA and HCA layers
  std::optional<Dsv4IndexerWeights> indexer;    // CSA layers
  TensorView ffn_norm;       // [hidden] f32
  TensorView router;         // [hidden, n_experts]
  TensorView score_bias;     // [n_experts] f32, or empty (hash layers)
  TensorView tid2eid;        // [top_k, vocab] i32: hash layers' experts per token, or empty
  TensorView gate_exps, up_exps, down_exps;  // [hidden, ffn, E], [hidden, ffn, E], [ffn, hidden, E]
  std::optional<Dsv4FfnWeights> shared;
};

struct Deepseek4Weights {
  TensorView token_embd;     // [hidden, vocab]
  HyperConnWeights hc_head;  // fn [hc * hidden, hc], base [hc], scale [1]
  TensorView output_norm;    // [hidden] f32
  TensorView output;         // [hidden, vocab]
  std::vector<Dsv4LayerWeights> layers;
  OwnedBuffers owned;

  static Deepseek4Weights bind(const GgufFile& f, const Deepseek4Config& c);

  // fn(TensorView&, TensorRole, layer) for every tensor the file gave (layer
  // -1 outside the layers): the placement's footprints, a device's copies.
  template <typename Fn>
  void for_each_tensor(Fn&& fn);
  template <typename Fn>
  void for_each_tensor(Fn&& fn) const {
    const_cast<Deepseek4Weights*>(this)->for_each_tensor(
        [&](TensorView& t, TensorRole role, int64_t il) { fn(static_cast<const TensorView&>(t), role, il); });
  }
};

// V4's multi-token-prediction module, from an MTP companion GGUF
// (ik_llama.cpp's layout: layer N = num_hidden_layers of a model that
// declares N + 1 layers, with the module's own hyper-connection head as
// output_hc_*). The embedding and the output head are the trunk's.
struct Deepseek4MtpWeights {
  Dsv4LayerWeights block;    // a V4 block of the layer kind compress_ratios[N] says
  TensorView eh_proj;        // [2 * hidden, hidden]: W_eh over [enorm(e); hnorm(h)]
  TensorView enorm, hnorm;   // [hidden] f32
  TensorView head_norm;      // [hidden] f32: nextn.shared_head_norm
  HyperConnWeights hc_head;  // fn [hc * hidden, hc], base [hc], scale [1]
  OwnedBuffers owned;

  // c: the companion's own config (num_hidden_layers = N).
  static Deepseek4MtpWeights bind(const GgufFile& f, const Deepseek4Config& c);
};

// Every tensor of one V4 block (the routed experts' as kRoutedExperts),
// empty ones (a hash layer's bias, a scored layer's table) skipped.
template <typename Fn>
void for_each_dsv4_layer_tensor(Dsv4LayerWeights& L, int64_t il, Fn&& fn) {
  const auto each = [&](std::initializer_list<TensorView*> ts, TensorRole role) {
    for (TensorView* t : ts)
      if (!t->empty()) fn(*t, role, il);
  };
  for (HyperConnWeights* h : {&L.hc_attn, &L.hc_ffn}) each({&h->fn, &h->base, &h->scale}, TensorRole::kEveryToken);
  each({&L.attn_norm, &L.sinks, &L.wq_a, &L.q_a_norm, &L.wq_b, &L.wkv, &L.kv_norm, &L.wo_a, &L.wo_b, &L.ffn_norm,
        &L.router, &L.score_bias, &L.tid2eid},
       TensorRole::kEveryToken);
  const auto compressor = [&](CompressorWeights& c) {
    each({&c.wkv, &c.wgate, &c.ape, &c.norm}, TensorRole::kEveryToken);
  };
  if (L.compressor) compressor(*L.compressor);
  if (L.indexer) {
    each({&L.indexer->wq_b, &L.indexer->proj}, TensorRole::kEveryToken);
    compressor(L.indexer->keys);
  }
  if (L.shared) each({&L.shared->gate, &L.shared->up, &L.shared->down}, TensorRole::kEveryToken);
  each({&L.gate_exps, &L.up_exps, &L.down_exps}, TensorRole::kRoutedExperts);
}

template <typename Fn>
void Deepseek4Weights::for_each_tensor(Fn&& fn) {
  for (TensorView* t : {&token_embd, &hc_head.fn, &hc_head.base, &hc_head.scale, &output_norm, &output})
    if (!t->empty()) fn(*t, TensorRole::kEveryToken, int64_t{-1});
  for (size_t l = 0; l < layers.size(); ++l) for_each_dsv4_layer_tensor(layers[l], static_cast<int64_t>(l), fn);
}

}  // namespace moe
