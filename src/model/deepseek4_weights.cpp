#include "model/deepseek4_weights.h"

#include "core/error.h"
#include "gguf/gguf_reader.h"

namespace moe {

namespace {

HyperConnWeights bind_hc(TensorBinder& b, const Deepseek4Config& c, const std::string& prefix, int64_t n_mix,
                         int64_t n_scale) {
  HyperConnWeights h;
  h.fn = b.tensor(prefix + "_fn.weight", {c.hc * c.hidden_size, n_mix});
  h.base = b.vector_f32(prefix + "_base.weight", n_mix);
  h.scale = b.vector_f32(prefix + "_scale.weight", n_scale);
  return h;
}

CompressorWeights bind_compressor(TensorBinder& b, const Deepseek4Config& c, int64_t il, const char* prefix,
                                  int64_t dim) {
  const int64_t ratio = c.compress_ratio(il), coff = Deepseek4Config::compressor_overlap(ratio);
  auto name = [&](const char* what) { return blk(il, (std::string(prefix) + what).c_str()); };
  CompressorWeights w;
  w.wkv = b.tensor(name("_kv.weight"), {c.hidden_size, coff * dim});
  w.wgate = b.tensor(name("_gate.weight"), {c.hidden_size, coff * dim});
  w.ape = b.tensor_f32(name("_ape.weight"), {coff * dim, ratio});  // llama-quantize may store it as q8_0
  w.norm = b.vector_f32(name("_norm.weight"), dim);
  return w;
}

Dsv4LayerWeights bind_layer(TensorBinder& b, const Deepseek4Config& c, int64_t il) {
  const int64_t D = c.hidden_size, H = c.num_attention_heads, d = c.head_dim, E = c.n_routed_experts;
  Dsv4LayerWeights L;
  L.hc_attn = bind_hc(b, c, blk(il, "hc_attn"), c.hc_mix_dim(), 3);
  L.hc_ffn = bind_hc(b, c, blk(il, "hc_ffn"), c.hc_mix_dim(), 3);
  L.attn_norm = b.vector_f32(blk(il, "attn_norm.weight"), D);
  L.sinks = b.vector_f32(blk(il, "attn_sinks.weight"), H);
  L.wq_a = b.tensor(blk(il, "attn_q_a.weight"), {D, c.q_lora_rank});
  L.q_a_norm = b.vector_f32(blk(il, "attn_q_a_norm.weight"), c.q_lora_rank);
  L.wq_b = b.tensor(blk(il, "attn_q_b.weight"), {c.q_lora_rank, H * d});
  L.wkv = b.tensor(blk(il, "attn_kv.weight"), {D, d});
  L.kv_norm = b.vector_f32(blk(il, "attn_kv_a_norm.weight"), d);
  L.wo_a = b.tensor(blk(il, "attn_output_a.weight"), {H * d / c.o_groups, c.o_groups * c.o_lora_rank});
  L.wo_b = b.tensor(blk(il, "attn_output_b.weight"), {c.o_groups * c.o_lora_rank, D});
  if (c.compress_ratio(il) != 0) L.compressor = bind_compressor(b, c, il, "attn_compressor", d);
  if (c.attention_kind(il) == Dsv4Attention::kCsa) {
    Dsv4IndexerWeights ix;
    ix.wq_b = b.tensor(blk(il, "indexer.attn_q_b.weight"), {c.q_lora_rank, c.index_n_heads * c.index_head_dim});
    ix.proj = b.tensor(blk(il, "indexer.proj.weight"), {D, c.index_n_heads});
    ix.keys = bind_compressor(b, c, il, "indexer_compressor", c.index_head_dim);
    L.indexer = ix;
  }
  L.ffn_norm = b.vector_f32(blk(il, "ffn_norm.weight"), D);
  L.router = b.tensor(blk(il, "ffn_gate_inp.weight"), {D, E});
  if (il < c.hash_layers) {
    L.tid2eid = b.tensor_of_type(blk(il, "ffn_gate_tid2eid.weight"), {c.num_experts_per_tok, c.vocab_size},
                                 GgmlType::I32);
    // An expert id outside the table would index past the expert tensors.
    const auto* ids = reinterpret_cast<const int32_t*>(L.tid2eid.data);
    for (int64_t i = 0; i < L.tid2eid.n_elements(); ++i)
      if (ids[i] < 0 || ids[i] >= E)
        throw_error("%s: tensor '%s' names expert %d of %lld", b.path().c_str(), L.tid2eid.name.c_str(), ids[i],
                    static_cast<long long>(E));
  } else {
    L.score_bias = b.vector_f32(blk(il, "exp_probs_b.bias"), E);
  }
  const int64_t F = c.moe_intermediate_size;
  L.gate_exps = b.tensor(blk(il, "ffn_gate_exps.weight"), {D, F, E});
  L.up_exps = b.tensor(blk(il, "ffn_up_exps.weight"), {D, F, E});
  L.down_exps = b.tensor(blk(il, "ffn_down_exps.weight"), {F, D, E});
  if (c.n_shared_experts > 0) {
    const int64_t S = F * c.n_shared_experts;
    L.shared = Dsv4FfnWeights{b.tensor(blk(il, "ffn_gate_shexp.weight"), {D, S}),
                              b.tensor(blk(il, "ffn_up_shexp.weight"), {D, S}),
                              b.tensor(blk(il, "ffn_down_shexp.weight"), {S, D})};
  }
  return L;
}

}  // namespace

Deepseek4Weights Deepseek4Weights::bind(const GgufFile& f, const Deepseek4Config& c) {
  Deepseek4Weights w;
  TensorBinder b(f, w.owned);
  const int64_t D = c.hidden_size, V = c.vocab_size;
  w.token_embd = b.tensor("token_embd.weight", {D, V});
  w.hc_head = bind_hc(b, c, "output_hc", c.hc, 1);
  w.output_norm = b.vector_f32("output_norm.weight", D);
  w.output = b.has("output.weight") ? b.tensor("output.weight", {D, V}) : w.token_embd;
  for (int64_t il = 0; il < c.num_hidden_layers; ++il) w.layers.push_back(bind_layer(b, c, il));
  return w;
}

Deepseek4MtpWeights Deepseek4MtpWeights::bind(const GgufFile& f, const Deepseek4Config& c) {
  Deepseek4MtpWeights w;
  TensorBinder b(f, w.owned);
  const int64_t D = c.hidden_size, il = c.num_hidden_layers;
  w.block = bind_layer(b, c, il);
  w.eh_proj = b.tensor(blk(il, "nextn.eh_proj.weight"), {2 * D, D});
  w.enorm = b.vector_f32(blk(il, "nextn.enorm.weight"), D);
  w.hnorm = b.vector_f32(blk(il, "nextn.hnorm.weight"), D);
  w.head_norm = b.vector_f32(blk(il, "nextn.shared_head_norm.weight"), D);
  w.hc_head = bind_hc(b, c, "output_hc", c.hc, 1);
  return w;
}

}  // namespace moe
