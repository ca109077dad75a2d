// The CPU backend's DeepSeek-V4 ops (runtime/backend.h), on the row kernels
// of dsv4_ops.h and the products of matmul.h; tokens split over the pool
// where a token's work is more than a few hundred values.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "cpu/cpu_backend.h"
#include "cpu/dsa_indexer.h"
#include "cpu/dsv4_ops.h"
#include "cpu/latent_rows.h"
#include "cpu/matmul.h"
#include "cpu/moe_route.h"
#include "cpu/ops.h"

namespace moe {

namespace {

size_t sz(int64_t n) { return static_cast<size_t>(n); }

}  // namespace

void CpuBackend::hc_init(const Act& e, int64_t hc, int64_t n, Act x) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t s = 0; s < hc; ++s) std::memcpy(x.row(t) + s * e.cols, e.row(t), sz(e.cols) * sizeof(float));
}

void CpuBackend::hc_pre(const HyperConnParams& p, const Act& x, const Act& mixes, int64_t n, Act h, Act post,
                        Act comb) {
  MOE_ASSERT(p.hc <= 64, "hc_pre: %lld streams", static_cast<long long>(p.hc));
  pool_.parallel_for(n, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      float pre[64];
      dsv4_hc_weights(mixes.row(t), p.scale.f32(), p.base.f32(), p.hc, p.eps, p.sinkhorn_iters, pre, post.row(t),
                      comb.row(t));
      dsv4_hc_collapse(x.row(t), pre, p.hc, p.width, h.row(t));
    }
  });
}

void CpuBackend::hc_post(const HyperConnParams& p, const Act& out, const Act& post, const Act& comb, int64_t n, Act x) {
  const size_t per = sz(p.hc * p.width);
  float* old_all = scratch(dsv4_hc_old_, sz(pool_.size()) * per);
  pool_.parallel_for(n, [&](int64_t t0, int64_t t1, int thread) {
    for (int64_t t = t0; t < t1; ++t)
      dsv4_hc_expand(out.row(t), post.row(t), comb.row(t), p.hc, p.width, x.row(t), old_all + sz(thread) * per);
  });
}

void CpuBackend::hc_head(const HyperConnParams& p, const Act& x, const Act& mixes, int64_t n, Act h) {
  MOE_ASSERT(p.hc <= 64, "hc_head: %lld streams", static_cast<long long>(p.hc));
  pool_.parallel_for(n, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      float pre[64];
      dsv4_hc_head_weights(mixes.row(t), p.scale.f32(), p.base.f32(), p.hc, p.eps, pre);
      dsv4_hc_collapse(x.row(t), pre, p.hc, p.width, h.row(t));
    }
  });
}

void CpuBackend::dsv4_qkv(const Dsv4AttnParams& p, Act q, const Act& kv, Dsv4LayerCache& c, int64_t pos0, int64_t n) {
  const int64_t d = p.head_dim;
  MOE_ASSERT(c.raw.rows >= p.window + n, "dsv4_qkv: a raw ring of %lld rows for a window of %lld and %lld tokens",
             static_cast<long long>(c.raw.rows), static_cast<long long>(p.window), static_cast<long long>(n));
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t h = 0; h < p.n_heads; ++h) {
      float* qh = q.row(t) + h * d;
      moe::rms_norm(qh, nullptr, d, p.eps, qh);
      dsv4_rope_tail(qh, d, p.rope_dim, pos0 + t, p.rope_base, p.rope_scaling, false);
    }
    float* slot = c.raw.row((pos0 + t) % c.raw.rows);
    float* row = p.cache_type == LatentType::kF32 ? slot : scratch(dsv4_row_, sz(d));
    std::memcpy(row, kv.row(t), sz(d) * sizeof(float));
    dsv4_rope_tail(row, d, p.rope_dim, pos0 + t, p.rope_base, p.rope_scaling, false);
    if (row != slot) latent_row_encode(p.cache_type, row, d, slot);
  }
}

void CpuBackend::dsv4_compress(const Dsv4AttnParams& p, const Act& kv, const Act& score, const TensorView& ape,
                               const TensorView& norm, bool indexer, Dsv4LayerCache& c, int64_t pos0, int64_t n) {
  const int64_t ratio = indexer ? 4 : p.ratio;
  const bool overlap = ratio == 4;
  const int64_t dim = indexer ? p.index_dim : p.head_dim;
  const int64_t width = (overlap ? 2 : 1) * dim;
  Act& skv = indexer ? c.index_kv : c.state_kv;
  Act& ssc = indexer ? c.index_score : c.state_score;
  Act& rows = indexer ? c.index_keys : c.comp;
  const float* bias = ape.f32();  // [ratio][width]
  MOE_ASSERT(skv.rows % ratio == 0 && skv.rows >= 2 * ratio + n, "dsv4_compress: a state ring of %lld rows for ratio %lld "
             "and %lld tokens", static_cast<long long>(skv.rows), static_cast<long long>(ratio), static_cast<long long>(n));
  for (int64_t t = 0; t < n; ++t) {
    const int64_t pos = pos0 + t;
    const int64_t slot = pos % skv.rows;
    std::memcpy(skv.row(slot), kv.row(t), sz(width) * sizeof(float));
    const float* b = bias + (pos % ratio) * width;
    for (int64_t i = 0; i < width; ++i) ssc.row(slot)[i] = score.row(t)[i] + b[i];
  }
  // The blocks these tokens complete, each from its tokens' state rows.
  for (int64_t pos = pos0; pos < pos0 + n; ++pos) {
    if ((pos + 1) % ratio != 0) continue;
    const int64_t blk = pos / ratio, start = blk * ratio;
    const bool has_prev = overlap && blk > 0;
    const int64_t cur = start % skv.rows, prev = has_prev ? (start - ratio) % skv.rows : 0;
    // Compressed rows and index keys are stored in the cache type.
    const bool typed = p.cache_type != LatentType::kF32;
    float* row = typed ? scratch(dsv4_row_, sz(dim)) : rows.row(blk);
    dsv4_compress_block(has_prev ? skv.row(prev) : nullptr, has_prev ? ssc.row(prev) : nullptr, skv.row(cur),
                        ssc.row(cur), ratio, dim, overlap, row);
    moe::rms_norm(row, norm.f32(), dim, p.eps, row);
    dsv4_rope_tail(row, dim, p.rope_dim, start, p.compress_rope_base, p.rope_scaling, false);
    if (typed) latent_row_encode(p.cache_type, row, dim, rows.row(blk));
  }
}

// The scores and the choice are V3.2's indexer's (dsa_indexer.h: the same
// sum_h w_h ReLU(q_h . k), its AVX-512 kernel, ggml's top-k ties).
void CpuBackend::dsv4_index_select(const Dsv4AttnParams& p, Act iq, const Act& w, const Dsv4LayerCache& c,
                                   int64_t pos0, int64_t n, Ids selected) {
  const int64_t HI = p.index_heads, dI = p.index_dim, k = p.index_topk;
  DsaParams dp;
  dp.n_heads = HI;
  dp.head_dim = dI;
  dp.key_type = p.cache_type;
  const DsaScoresFn fast = dsa_scores_kernel();
  const int64_t most = (pos0 + n) / 4 + 1;
  float* scores_all = scratch(dsv4_scores_, sz(pool_.size() * most));
  int32_t* order_all = scratch(sparse_order_, sz(pool_.size() * most));
  auto rope_q = [&](int64_t t) {
    for (int64_t h = 0; h < HI; ++h)
      dsv4_rope_tail(iq.row(t) + h * dI, dI, p.rope_dim, pos0 + t, p.compress_rope_base, p.rope_scaling, false);
  };
  // Scores of keys [k0, k1) for token t (each key's score alone, so the
  // keys may be split among threads).
  auto score = [&](int64_t t, int64_t k0, int64_t k1, float* scores) {
    (fast ? fast : dsa_scores)(dp, iq.row(t), w.row(t), c.index_keys.row(k0), c.index_keys.stride, k1 - k0, scores + k0);
  };
  auto choose = [&](int64_t t, const float* scores, int32_t* order) {
    const int64_t n_visible = (pos0 + t + 1) / 4;  // blocks that end at or before this token
    int32_t* sel = selected.row(t);
    std::fill(sel, sel + k, -1);
    // In block order, as llama.cpp's mask over the compressed rows sums them.
    if (n_visible > 0) std::sort(sel, sel + dsa_top_k(scores, n_visible, k, sel, order));
  };
  if (n >= pool_.size()) {  // a prompt: tokens split among the threads
    pool_.parallel_for(n, [&](int64_t t0, int64_t t1, int thread) {
      float* scores = scores_all + sz(thread) * sz(most);
      int32_t* order = order_all + sz(thread) * sz(most);
      for (int64_t t = t0; t < t1; ++t) {
        rope_q(t);
        score(t, 0, (pos0 + t + 1) / 4, scores);
        choose(t, scores, order);
      }
    });
    return;
  }
  // Generation: each token's keys split among the threads.
  for (int64_t t = 0; t < n; ++t) {
    rope_q(t);
    pool_.parallel_for((pos0 + t + 1) / 4, [&](int64_t k0, int64_t k1, int) { score(t, k0, k1, scores_all); });
    choose(t, scores_all, order_all);
  }
}

void CpuBackend::dsv4_attention(const Dsv4AttnParams& p, const Act& q, const Dsv4LayerCache& c,
                                const TensorView& sinks, const Ids& selected, int64_t pos0, int64_t n, Act o) {
  const int64_t d = p.head_dim;
  const int64_t n_comp = p.ratio == 4 ? p.index_topk : p.ratio > 0 ? (pos0 + n) / p.ratio : 0;
  const int64_t most = p.window + n_comp;
  float* scores_all = scratch(dsv4_scores_, sz(pool_.size() * most * p.n_heads));
  const float** keys_all = scratch(dsv4_keys_, sz(pool_.size() * most));
  // Rows stored in another type are read back as f32 into a thread's buffer.
  const bool typed = p.cache_type != LatentType::kF32;
  float* decoded_all = typed ? scratch(dsv4_decoded_, sz(pool_.size() * most * d)) : nullptr;
  // The rows token t attends to: its window, then the compressed rows it sees.
  auto gather = [&](int64_t t, const float** keys, float* decoded) {
    const int64_t pos = pos0 + t;
    int64_t nk = 0;
    auto take = [&](const float* stored) {
      if (typed) {
        latent_row_decode(p.cache_type, stored, d, decoded + nk * d);
        stored = decoded + nk * d;
      }
      keys[nk++] = stored;
    };
    for (int64_t s = std::max<int64_t>(0, pos - p.window + 1); s <= pos; ++s) take(c.raw.row(s % c.raw.rows));
    if (p.ratio == 4) {
      for (int64_t i = 0; i < p.index_topk && selected.row(t)[i] >= 0; ++i) take(c.comp.row(selected.row(t)[i]));
    } else if (p.ratio > 0) {
      for (int64_t b = 0; b < (pos + 1) / p.ratio; ++b) take(c.comp.row(b));
    }
    return nk;
  };
  auto decoded_of = [&](int thread) { return typed ? decoded_all + sz(thread) * sz(most * d) : nullptr; };
  // Heads [h0, h1) of token t, each head alone (so heads may be split among threads).
  auto attend = [&](int64_t t, const float* const* keys, int64_t nk, int64_t h0, int64_t h1, float* scores) {
    float* out = o.row(t);
    dsv4_attention_sinks(q.row(t) + h0 * d, h1 - h0, d, keys, nk, sinks.f32() + h0, p.scale, scores, out + h0 * d);
    for (int64_t h = h0; h < h1; ++h) dsv4_rope_tail(out + h * d, d, p.rope_dim, pos0 + t, p.rope_base, p.rope_scaling, true);
  };
  if (n >= pool_.size()) {  // a prompt: tokens split among the threads
    pool_.parallel_for(n, [&](int64_t t0, int64_t t1, int thread) {
      float* scores = scores_all + sz(thread * most * p.n_heads);
      const float** keys = keys_all + sz(thread * most);
      for (int64_t t = t0; t < t1; ++t) attend(t, keys, gather(t, keys, decoded_of(thread)), 0, p.n_heads, scores);
    });
    return;
  }
  // Generation: each token's heads split among the threads.
  for (int64_t t = 0; t < n; ++t) {
    const int64_t nk = gather(t, keys_all, decoded_of(0));
    pool_.parallel_for(p.n_heads, [&](int64_t h0, int64_t h1, int thread) {
      attend(t, keys_all, nk, h0, h1, scores_all + sz(thread * most * p.n_heads));
    });
  }
}

void CpuBackend::dsv4_grouped_output(const TensorView& wo_a, int64_t groups, const Act& o, int64_t n, Act oa) {
  const int64_t gd = o.cols / groups, R = wo_a.ne[1] / groups;
  float* in = scratch(dsv4_in_, sz(n * gd));
  float* out = scratch(dsv4_out_, sz(n * R));
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t t = 0; t < n; ++t) std::memcpy(in + t * gd, o.row(t) + g * gd, sz(gd) * sizeof(float));
    TensorView w = wo_a;  // rows [g R, (g + 1) R): group g's projection
    w.ne[1] = R;
    w.data = wo_a.data + sz(g * R) * wo_a.nb[1];
    moe::matmul(w, in, n, out, scratch(mm_scratch_, matmul_scratch_bytes(w, n, !batch_invariant_)), pool_,
                !batch_invariant_);
    for (int64_t t = 0; t < n; ++t) std::memcpy(oa.row(t) + g * R, out + t * R, sz(R) * sizeof(float));
  }
}

void CpuBackend::moe_route_hashed(const MoeRouteParams& p, const TensorView& tid2eid, const Act& logits,
                                  const int32_t* tokens, int64_t n, Ids ids, Act weights) {
  const auto* table = reinterpret_cast<const int32_t*>(tid2eid.data);
  float* scores = scratch(route_scratch_, sz(p.n_experts));
  for (int64_t t = 0; t < n; ++t) {
    moe_gate_scores(p.scoring, logits.row(t), p.n_experts, scores);
    std::copy(table + tokens[t] * p.top_k, table + (tokens[t] + 1) * p.top_k, ids.row(t));
    moe_route_weights(p, scores, ids.row(t), weights.row(t));
  }
}

void CpuBackend::swiglu_clamped(Act g, const Act& u, float limit, int64_t n) {
  for (int64_t t = 0; t < n; ++t) {
    if (limit > 0.0f) moe::swiglu_clamped(g.row(t), u.row(t), g.cols, limit);
    else moe::swiglu(g.row(t), u.row(t), g.cols, g.row(t));
  }
}

}  // namespace moe
