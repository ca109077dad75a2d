// DeepSeek-V4 attention over the seam (deepseek4.h): the shared KV head, the
// compressors, the lightning indexer's choice and the grouped output.
#include <cmath>

#include "model/deepseek4.h"

namespace moe {

Dsv4AttnParams Deepseek4Session::attn_params(const Deepseek4Config& c, int64_t il) const {
  Dsv4AttnParams p;
  p.n_heads = c.num_attention_heads;
  p.head_dim = c.head_dim;
  p.rope_dim = c.rope_dim;
  p.window = c.sliding_window;
  p.ratio = c.compress_ratio(il);
  // Layers with compressed rows rotate with their own base; window-only
  // layers with the model's.
  p.rope_base = p.ratio != 0 ? c.compress_rope_theta : c.rope_theta;
  p.compress_rope_base = c.compress_rope_theta;
  p.rope_scaling = c.rope_scaling_params(il);
  p.cache_type = cache_type_;
  p.eps = c.rms_norm_eps;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  p.index_heads = c.index_n_heads;
  p.index_dim = c.index_head_dim;
  p.index_topk = c.index_topk;
  return p;
}

void Deepseek4Session::attention(const Dsv4LayerWeights& L, const Deepseek4Config& c, int64_t il,
                                 const std::vector<SpanAt>& at, int64_t n) {
  const Dsv4AttnParams p = attn_params(c, il);
  // q = RMSNorm_h(W_qb RMSNorm(W_qa h)), kv = RMSNorm(W_kv h): one shared head.
  be_->matmul(L.wq_a, h_, n, qa_);
  be_->rms_norm(qa_, L.q_a_norm, p.eps, n, qa_);
  be_->matmul(L.wq_b, qa_, n, q_);
  be_->matmul(L.wkv, h_, n, kv_);
  be_->rms_norm(kv_, L.kv_norm, p.eps, n, kv_);
  const int64_t width = Deepseek4Config::compressor_overlap(p.ratio) * c_.head_dim;
  if (L.compressor) {
    be_->matmul(L.compressor->wkv, h_, n, sc_kv_.reshaped(width));
    be_->matmul(L.compressor->wgate, h_, n, sc_score_.reshaped(width));
  }
  const Act iq = iq_.reshaped(std::max<int64_t>(1, c_.index_n_heads * c_.index_head_dim));
  const Act iw = iw_.reshaped(std::max<int64_t>(1, c_.index_n_heads));
  if (L.indexer) {
    be_->matmul(L.indexer->wq_b, qa_, n, iq);
    be_->matmul(L.indexer->proj, h_, n, iw);
    be_->matmul(L.indexer->keys.wkv, h_, n, ik_kv_);
    be_->matmul(L.indexer->keys.wgate, h_, n, ik_score_);
  }
  // Per sequence: rows into its cache, the blocks they complete, then the
  // attention of every token over what it sees.
  for (const SpanAt& a : at) {
    Dsv4LayerCache& lc = layer_cache(a.seq, il);
    be_->dsv4_qkv(p, q_.rows_from(a.r0, a.n), kv_.rows_from(a.r0, a.n), lc, a.pos0, a.n);
    if (L.compressor)
      be_->dsv4_compress(p, sc_kv_.reshaped(width).rows_from(a.r0, a.n), sc_score_.reshaped(width).rows_from(a.r0, a.n),
                         L.compressor->ape, L.compressor->norm, false, lc, a.pos0, a.n);
    if (L.indexer) {
      be_->dsv4_compress(p, ik_kv_.rows_from(a.r0, a.n), ik_score_.rows_from(a.r0, a.n), L.indexer->keys.ape,
                         L.indexer->keys.norm, true, lc, a.pos0, a.n);
      be_->dsv4_index_select(p, iq.rows_from(a.r0, a.n), iw.rows_from(a.r0, a.n), lc, a.pos0, a.n,
                             selected_.rows_from(a.r0, a.n));
    }
    be_->dsv4_attention(p, q_.rows_from(a.r0, a.n), lc, L.sinks, selected_.rows_from(a.r0, a.n), a.pos0, a.n,
                        o_.rows_from(a.r0, a.n));
  }
  be_->dsv4_grouped_output(L.wo_a, c_.o_groups, o_, n, oa_);
  be_->matmul(L.wo_b, oa_, n, out_);
}

}  // namespace moe
