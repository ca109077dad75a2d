#include "model/deepseek2_weights.h"

#include <cstring>

#include "core/error.h"
#include "gguf/gguf_reader.h"
#include "model/tensor_binder.h"
#include "quant/dequantize.h"

namespace moe {

namespace {

// Legacy files store kv_b_proj unsplit: rows [h*(nope+v), h*(nope+v)+nope)
// are head h's key part, the next v rows its value part, each of
// kv_lora_rank columns. Split into wk_b (per head transposed) and wv_b.
void split_legacy_kv_b(TensorBinder& b, const Deepseek2Config& c, int64_t il, MlaWeights& m) {
  const int64_t H = c.num_attention_heads, nope = c.qk_nope_head_dim, v = c.v_head_dim, r = c.kv_lora_rank;
  const TensorView kv_b = b.tensor(blk(il, "attn_kv_b.weight"), {r, H * (nope + v)});
  std::vector<float> row(static_cast<size_t>(r));
  std::vector<float> k(static_cast<size_t>(H * r * nope)), vv(static_cast<size_t>(H * v * r));
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t j = 0; j < nope + v; ++j) {
      dequantize_row_ref(kv_b.type, kv_b.row(h * (nope + v) + j), row.data(), r);
      for (int64_t i = 0; i < r; ++i) {
        if (j < nope) k[static_cast<size_t>((h * r + i) * nope + j)] = row[static_cast<size_t>(i)];  // wk_b[h][i][j]
        else vv[static_cast<size_t>((h * v + (j - nope)) * r + i)] = row[static_cast<size_t>(i)];   // wv_b[h][j][i]
      }
    }
  }
  m.wk_b = b.owned_f32(blk(il, "attn_k_b.weight"), {nope, r, H, 1}, std::move(k));
  m.wv_b = b.owned_f32(blk(il, "attn_v_b.weight"), {r, v, H, 1}, std::move(vv));
}

// The tensors of decoder block il (the trunk's, or the MTP module's).
LayerWeights bind_layer(TensorBinder& b, const Deepseek2Config& c, int64_t il) {
  const int64_t D = c.hidden_size, H = c.num_attention_heads;
  LayerWeights L;
  L.attn_norm = b.vector_f32(blk(il, "attn_norm.weight"), D);
  MlaWeights& m = L.mla;
  if (c.q_lora_rank > 0) {
    QProjLora q;
    q.wq_a = b.tensor(blk(il, "attn_q_a.weight"), {D, c.q_lora_rank});
    q.q_a_norm = b.vector_f32(blk(il, "attn_q_a_norm.weight"), c.q_lora_rank);
    q.wq_b = b.tensor(blk(il, "attn_q_b.weight"), {c.q_lora_rank, H * c.qk_head_dim()});
    m.q_proj = q;
  } else {
    m.q_proj = QProjPlain{b.tensor(blk(il, "attn_q.weight"), {D, H * c.qk_head_dim()})};
  }
  m.wkv_a = b.tensor(blk(il, "attn_kv_a_mqa.weight"), {D, c.kv_lora_rank + c.qk_rope_head_dim});
  m.kv_a_norm = b.vector_f32(blk(il, "attn_kv_a_norm.weight"), c.kv_lora_rank);
  if (b.has(blk(il, "attn_k_b.weight"))) {
    m.wk_b = b.tensor(blk(il, "attn_k_b.weight"), {c.qk_nope_head_dim, c.kv_lora_rank, H});
    m.wv_b = b.tensor(blk(il, "attn_v_b.weight"), {c.kv_lora_rank, c.v_head_dim, H});
  } else {
    split_legacy_kv_b(b, c, il, m);
  }
  m.wo = b.tensor(blk(il, "attn_output.weight"), {H * c.v_head_dim, D});
  if (c.has_indexer()) {
    IndexerWeights ix;
    ix.wq_b = b.tensor(blk(il, "indexer.attn_q_b.weight"), {c.q_lora_rank, c.index_n_heads * c.index_head_dim});
    ix.wk = b.tensor(blk(il, "indexer.attn_k.weight"), {D, c.index_head_dim});
    ix.k_norm = b.vector_f32(blk(il, "indexer.k_norm.weight"), c.index_head_dim);
    ix.k_norm_b = b.vector_f32(blk(il, "indexer.k_norm.bias"), c.index_head_dim);
    ix.proj = b.tensor(blk(il, "indexer.proj.weight"), {D, c.index_n_heads});
    m.indexer = ix;
  }
  L.ffn_norm = b.vector_f32(blk(il, "ffn_norm.weight"), D);
  if (!c.is_moe_layer(il)) {
    L.ffn = FfnWeights{b.tensor(blk(il, "ffn_gate.weight"), {D, c.intermediate_size}),
                       b.tensor(blk(il, "ffn_up.weight"), {D, c.intermediate_size}),
                       b.tensor(blk(il, "ffn_down.weight"), {c.intermediate_size, D})};
  } else {
    const int64_t E = c.n_routed_experts, F = c.moe_intermediate_size;
    MoeWeights e;
    e.router = b.tensor(blk(il, "ffn_gate_inp.weight"), {D, E});
    if (b.has(blk(il, "exp_probs_b.bias"))) e.score_bias = b.vector_f32(blk(il, "exp_probs_b.bias"), E);
    e.gate_exps = b.tensor(blk(il, "ffn_gate_exps.weight"), {D, F, E});
    e.up_exps = b.tensor(blk(il, "ffn_up_exps.weight"), {D, F, E});
    e.down_exps = b.tensor(blk(il, "ffn_down_exps.weight"), {F, D, E});
    if (c.n_shared_experts > 0) {
      const int64_t S = F * c.n_shared_experts;
      e.shared = FfnWeights{b.tensor(blk(il, "ffn_gate_shexp.weight"), {D, S}),
                            b.tensor(blk(il, "ffn_up_shexp.weight"), {D, S}),
                            b.tensor(blk(il, "ffn_down_shexp.weight"), {S, D})};
    }
    L.ffn = std::move(e);
  }
  return L;
}

// The MTP module of layer il = num_hidden_layers; throws naming a missing tensor.
MtpWeights bind_mtp(TensorBinder& b, const Deepseek2Config& c, const Deepseek2Weights& w, int64_t il) {
  const int64_t D = c.hidden_size, V = c.vocab_size;
  MtpWeights m;
  m.block = bind_layer(b, c, il);
  m.eh_proj = b.tensor(blk(il, "nextn.eh_proj.weight"), {2 * D, D});
  m.enorm = b.vector_f32(blk(il, "nextn.enorm.weight"), D);
  m.hnorm = b.vector_f32(blk(il, "nextn.hnorm.weight"), D);
  // The embedding and head are the main model's (the paper's sharing); a
  // file may carry copies of its own (DeepSeek's checkpoints do).
  const std::string embed = blk(il, "nextn.embed_tokens.weight"), norm = blk(il, "nextn.shared_head_norm.weight"),
                    head = blk(il, "nextn.shared_head_head.weight");
  m.embed = b.has(embed) ? b.tensor(embed, {D, V}) : w.token_embd;
  m.head_norm = b.has(norm) ? b.vector_f32(norm, D) : w.output_norm;
  m.head = b.has(head) ? b.tensor(head, {D, V}) : w.output;
  return m;
}

}  // namespace

Deepseek2Weights Deepseek2Weights::bind(const GgufFile& f, const Deepseek2Config& c) {
  Deepseek2Weights w;
  TensorBinder b(f, w.owned);
  const int64_t D = c.hidden_size, V = c.vocab_size;
  w.token_embd = b.tensor("token_embd.weight", {D, V});
  w.output_norm = b.vector_f32("output_norm.weight", D);
  w.output = b.has("output.weight") ? b.tensor("output.weight", {D, V}) : w.token_embd;

  for (int64_t il = 0; il < c.num_hidden_layers; ++il) w.layers.push_back(bind_layer(b, c, il));
  if (c.num_nextn_predict_layers <= 0) {
    w.mtp_missing =
        strfmt("%s has no MTP layer (%s.nextn_predict_layers is 0)", f.path().c_str(), c.architecture.c_str());
  } else {
    try {
      w.mtp = bind_mtp(b, c, w, c.num_hidden_layers);
    } catch (const Error& e) {  // the trunk runs without it; drafting says why
      w.mtp_missing = e.what();
    }
  }
  return w;
}

}  // namespace moe
