// DeepSeek-V2/V3 weights bound by name from a GGUF file, shapes checked at
// load. Tensors stay in their stored type in the mapping; only tiny tensors
// (norm vectors not stored as f32, and the split of a legacy attn_kv_b) are
// converted into memory we own. Shapes use ggml order: [in, out(, heads/experts)].
// Every weight, norm and bias is a TensorView; for_each_tensor walks them all
// (placement, upload to a device, memory accounting).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/tensor.h"
#include "model/deepseek2_config.h"
#include "runtime/expert_placement.h"  // TensorRole

namespace moe {

class GgufFile;

// q = W_q x  (V2-Lite)  or  q = W_q_b · RMSNorm(W_q_a x)  (q_lora_rank > 0)
struct QProjPlain {
  TensorView wq;  // [hidden, heads * qk_head_dim]
};
struct QProjLora {
  TensorView wq_a;         // [hidden, q_lora_rank]
  TensorView q_a_norm;     // [q_lora_rank] f32
  TensorView wq_b;         // [q_lora_rank, heads * qk_head_dim]
};

// DeepSeek-V3.2's lightning indexer (DeepSeek Sparse Attention).
struct IndexerWeights {
  TensorView wq_b;           // [q_lora_rank, index_heads * index_dim]: queries from the q-LoRA latent
  TensorView wk;             // [hidden, index_dim]: one key per token
  TensorView k_norm, k_norm_b;  // [index_dim] f32: LayerNorm of the key
  TensorView proj;           // [hidden, index_heads]: per-head weights of a query
};

struct MlaWeights {
  std::variant<QProjPlain, QProjLora> q_proj;
  TensorView wkv_a;          // [hidden, kv_lora_rank + qk_rope_head_dim]: c_kv and k_rope
  TensorView kv_a_norm;      // [kv_lora_rank] f32
  TensorView wk_b;           // [qk_nope_head_dim, kv_lora_rank, heads]: absorbs into q
  TensorView wv_b;           // [kv_lora_rank, v_head_dim, heads]: latent -> value
  TensorView wo;             // [heads * v_head_dim, hidden]
  std::optional<IndexerWeights> indexer;  // deepseek32
};

struct FfnWeights {          // W_down(silu(W_gate x) * W_up x)
  TensorView gate;           // [hidden, ffn]
  TensorView up;             // [hidden, ffn]
  TensorView down;           // [ffn, hidden]
};

struct MoeWeights {
  TensorView router;         // [hidden, n_routed_experts]
  TensorView score_bias;     // [n_routed_experts] f32 exp_probs_b (e_score_correction_bias), or empty
  TensorView gate_exps;      // [hidden, moe_ffn, n_routed_experts]
  TensorView up_exps;        // [hidden, moe_ffn, n_routed_experts]
  TensorView down_exps;      // [moe_ffn, hidden, n_routed_experts]
  std::optional<FfnWeights> shared;  // [hidden, moe_ffn * n_shared_experts], ...
};

struct LayerWeights {
  TensorView attn_norm;      // [hidden] f32
  MlaWeights mla;
  TensorView ffn_norm;       // [hidden] f32
  std::variant<FfnWeights, MoeWeights> ffn;  // dense for il < first_k_dense_replace
};

// The multi-token-prediction module (DeepSeek-V3 §2.2), layer
// num_hidden_layers of the file (blk.N.nextn.*): from the main model's final
// hidden state h_i and the embedding of token i+1,
//   x = W_eh [RMSNorm_e(Emb(t_{i+1})); RMSNorm_h(h_i)]
// goes through one decoder block, and its output head predicts t_{i+2}.
struct MtpWeights {
  LayerWeights block;
  TensorView eh_proj;        // [2 * hidden, hidden]
  TensorView enorm, hnorm;   // [hidden] f32
  TensorView embed;          // [hidden, vocab]: nextn.embed_tokens, or the main token_embd
  TensorView head_norm;      // [hidden] f32: nextn.shared_head_norm, or the main output_norm
  TensorView head;           // [hidden, vocab]: nextn.shared_head_head, or the main output
};

struct Deepseek2Weights {
  TensorView token_embd;     // [hidden, vocab]
  TensorView output_norm;    // [hidden] f32
  TensorView output;         // [hidden, vocab]; token_embd when tied
  std::vector<LayerWeights> layers;
  // The file's MTP module, bound when it has one (nextn_predict_layers > 0)
  // and its tensors are complete; mtp_missing says why not otherwise. Not
  // visited by for_each_tensor: only a session that drafts with it uses it.
  std::optional<MtpWeights> mtp;
  std::string mtp_missing;
  std::vector<std::shared_ptr<std::vector<uint8_t>>> owned;  // converted small tensors

  // Binds every tensor the forward pass uses; throws naming the tensor,
  // expected and found shape/type. Unsupported types are refused here.
  static Deepseek2Weights bind(const GgufFile& f, const Deepseek2Config& c);

  // Calls fn(TensorView&, TensorRole, layer) for every tensor the forward
  // pass reads (layer -1 outside the layers). A tied output head is visited
  // as `output` too, under token_embd's name.
  template <typename Fn>
  void for_each_tensor(Fn&& fn);
  template <typename Fn>
  void for_each_tensor(Fn&& fn) const {
    const_cast<Deepseek2Weights*>(this)->for_each_tensor(
        [&](TensorView& t, TensorRole role, int64_t il) { fn(static_cast<const TensorView&>(t), role, il); });
  }
};

template <typename Fn>
void for_each_layer_tensor(LayerWeights& L, int64_t il, Fn&& fn) {
  constexpr TensorRole kAll = TensorRole::kEveryToken;
  auto ffn = [&](FfnWeights& f) {
    fn(f.gate, kAll, il);
    fn(f.up, kAll, il);
    fn(f.down, kAll, il);
  };
  fn(L.attn_norm, kAll, il);
  if (auto* lora = std::get_if<QProjLora>(&L.mla.q_proj)) {
    fn(lora->wq_a, kAll, il);
    fn(lora->q_a_norm, kAll, il);
    fn(lora->wq_b, kAll, il);
  } else {
    fn(std::get<QProjPlain>(L.mla.q_proj).wq, kAll, il);
  }
  fn(L.mla.wkv_a, kAll, il);
  fn(L.mla.kv_a_norm, kAll, il);
  fn(L.mla.wk_b, kAll, il);
  fn(L.mla.wv_b, kAll, il);
  fn(L.mla.wo, kAll, il);
  if (IndexerWeights* ix = L.mla.indexer ? &*L.mla.indexer : nullptr) {
    fn(ix->wq_b, kAll, il);
    fn(ix->wk, kAll, il);
    fn(ix->k_norm, kAll, il);
    fn(ix->k_norm_b, kAll, il);
    fn(ix->proj, kAll, il);
  }
  fn(L.ffn_norm, kAll, il);
  if (auto* dense = std::get_if<FfnWeights>(&L.ffn)) return ffn(*dense);
  MoeWeights& e = std::get<MoeWeights>(L.ffn);
  fn(e.router, kAll, il);
  if (!e.score_bias.empty()) fn(e.score_bias, kAll, il);
  fn(e.gate_exps, TensorRole::kRoutedExperts, il);
  fn(e.up_exps, TensorRole::kRoutedExperts, il);
  fn(e.down_exps, TensorRole::kRoutedExperts, il);
  if (e.shared) ffn(*e.shared);
}

// The matrices of a layer besides the routed experts that only the matrix
// product reads (whole rows, every token): the q projections, W_DKV, W_O,
// the dense or shared FFN. Not W_UK / W_UV (read per head, and row by row
// for decompressed attention), nor the router or the V3.2 indexer.
template <typename Fn>
void for_each_product_matrix(LayerWeights& L, Fn&& fn) {
  if (auto* lora = std::get_if<QProjLora>(&L.mla.q_proj)) {
    fn(lora->wq_a);
    fn(lora->wq_b);
  } else {
    fn(std::get<QProjPlain>(L.mla.q_proj).wq);
  }
  fn(L.mla.wkv_a);
  fn(L.mla.wo);
  FfnWeights* f = std::get_if<FfnWeights>(&L.ffn);
  if (f == nullptr && std::get<MoeWeights>(L.ffn).shared) f = &*std::get<MoeWeights>(L.ffn).shared;
  if (f == nullptr) return;
  fn(f->gate);
  fn(f->up);
  fn(f->down);
}

template <typename Fn>
void Deepseek2Weights::for_each_tensor(Fn&& fn) {
  fn(token_embd, TensorRole::kEveryToken, -1);
  for (size_t l = 0; l < layers.size(); ++l) for_each_layer_tensor(layers[l], static_cast<int64_t>(l), fn);
  fn(output_norm, TensorRole::kEveryToken, -1);
  fn(output, TensorRole::kEveryToken, -1);
}

// Every tensor of the MTP module, its block's under layer il.
template <typename Fn>
void for_each_mtp_tensor(MtpWeights& m, int64_t il, Fn&& fn) {
  for_each_layer_tensor(m.block, il, fn);
  for (TensorView* t : {&m.eh_proj, &m.enorm, &m.hnorm, &m.embed, &m.head_norm, &m.head})
    fn(*t, TensorRole::kEveryToken, il);
}

}  // namespace moe
