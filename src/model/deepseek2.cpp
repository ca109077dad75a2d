// DeepSeek-V2/V3 forward pass on the CPU. Each block follows the paper's
// equations; the comments name them (DeepSeek-V2 §2.1 MLA, §2.2 DeepSeekMoE;
// DeepSeek-V3 §2.1.2 auxiliary-loss-free balancing) and the symbols of
// DeepSeek's inference/model.py.
#include "model/deepseek2.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/attention.h"
#include "cpu/matmul.h"
#include "cpu/moe_experts.h"
#include "cpu/ops.h"
#include "model/moe_router.h"
#include "quant/dequantize.h"

namespace moe {

namespace {

// Frequencies of the rotated pairs, with YaRN's interpolation ramp between
// the original (high-frequency) and the factor-scaled (low-frequency) pairs.
// inference/model.py precompute_freqs_cis; ggml rope_yarn.
std::vector<float> rope_frequencies(const Deepseek2Config& c) {
  const int64_t d = c.qk_rope_head_dim;
  std::vector<float> f(static_cast<size_t>(d / 2));
  const float theta_scale = std::pow(c.rope_theta, -2.0f / static_cast<float>(d));
  float theta = 1.0f;
  for (auto& v : f) {
    v = theta;
    theta *= theta_scale;
  }
  if (c.rope_scaling == RopeScaling::kYarn) {
    auto corr_dim = [&](float n_rot) {
      return static_cast<float>(d) *
             std::log(static_cast<float>(c.original_max_position_embeddings) / (n_rot * 2.0f * static_cast<float>(M_PI))) /
             (2.0f * std::log(c.rope_theta));
    };
    const float low = std::max(0.0f, std::floor(corr_dim(c.beta_fast)));
    const float high = std::min(static_cast<float>(d - 1), std::ceil(corr_dim(c.beta_slow)));
    for (size_t i = 0; i < f.size(); ++i) {
      const float y = (static_cast<float>(i) - low) / std::max(0.001f, high - low);
      const float ramp = 1.0f - std::min(1.0f, std::max(0.0f, y));  // 1: keep, 0: interpolate
      f[i] = f[i] / c.rope_factor * (1.0f - ramp) + f[i] * ramp;
    }
  }
  return f;
}

size_t sz(int64_t n) { return static_cast<size_t>(n); }

}  // namespace

std::unique_ptr<Deepseek2Model> Deepseek2Model::load(const std::string& path) {
  std::unique_ptr<Deepseek2Model> m(new Deepseek2Model(GgufFile::open(path)));
  m->config_ = Deepseek2Config::from_gguf(m->file_);
  m->weights_ = Deepseek2Weights::bind(m->file_, m->config_);
  m->rope_freqs_ = rope_frequencies(m->config_);
  return m;
}

Deepseek2Session::Deepseek2Session(const Deepseek2Model& model, int64_t n_ctx, int64_t n_batch, int n_threads)
    : model_(model),
      c_(model.config()),
      cache_(model.config().num_hidden_layers, n_ctx, model.config().kv_lora_rank, model.config().qk_rope_head_dim),
      n_batch_(std::max<int64_t>(1, n_batch)),
      pool_(n_threads) {
  MOE_ASSERT(n_ctx > 0, "context size must be positive");
  const int64_t B = n_batch_, D = c_.hidden_size, H = c_.num_attention_heads;
  const int64_t R = c_.kv_lora_rank, P = c_.qk_rope_head_dim;
  const int64_t ffn = std::max(c_.intermediate_size, c_.moe_intermediate_size * std::max<int64_t>(1, c_.n_shared_experts));
  x_.resize(sz(B * D));
  h_.resize(sz(B * D));
  out_.resize(sz(B * D));
  q_a_.resize(sz(B * std::max<int64_t>(1, c_.q_lora_rank)));
  q_.resize(sz(B * H * c_.qk_head_dim()));
  kv_a_.resize(sz(B * (R + P)));
  head_dim_max_ = std::max({c_.qk_nope_head_dim, R, c_.v_head_dim});
  head_in_.resize(sz(pool_.size() * B * head_dim_max_));
  head_out_.resize(sz(pool_.size() * B * head_dim_max_));
  head_scratch_.resize(sz(pool_.size() * (B * head_dim_max_ * 4 + 4096)));
  q_abs_.resize(sz(B * H * (R + P)));
  o_lat_.resize(sz(B * H * R));
  attn_v_.resize(sz(B * H * c_.v_head_dim));
  scores_.resize(sz(pool_.size() * kAttnHeadGroup * n_ctx));
  ffn_g_.resize(sz(B * ffn));
  ffn_u_.resize(sz(B * ffn));
  const int64_t E = std::max<int64_t>(1, c_.n_routed_experts), K = std::max<int64_t>(1, c_.num_experts_per_tok);
  router_.resize(sz(B * E));
  route_ids_.resize(sz(B * K));
  route_w_.resize(sz(B * K));
  route_scratch_.resize(sz(2 * E));
  expert_counts_.assign(sz(c_.num_hidden_layers * E), 0);
  slot_out_.resize(sz(B * K * D));
  ye_.resize(sz(B * D));
  // Activations quantized for the matmuls: at most 4 bytes per input element.
  const int64_t max_in = std::max({D, ffn, H * c_.v_head_dim, R, c_.qk_nope_head_dim, c_.q_lora_rank});
  mm_scratch_.resize(sz(B * max_in * 4 + 4096));
}

void Deepseek2Session::mm(const TensorView& W, const float* x, int64_t n, float* y) {
  MOE_DASSERT(matmul_scratch_bytes(W, n) <= mm_scratch_.size());
  matmul(W, x, n, y, mm_scratch_.data(), pool_);
}

void Deepseek2Session::forward(const int32_t* tokens, int64_t n, float* logits, bool all_logits) {
  if (n_past_ + n > cache_.n_ctx())
    throw_error("context full: %lld tokens already in the cache, %lld more do not fit in the context of %lld",
                static_cast<long long>(n_past_), static_cast<long long>(n), static_cast<long long>(cache_.n_ctx()));
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= c_.vocab_size)
      throw_error("token id %d at position %lld is outside the vocabulary (%lld tokens)", tokens[i],
                  static_cast<long long>(i), static_cast<long long>(c_.vocab_size));
  for (int64_t i = 0; i < n; i += n_batch_) {
    const int64_t m = std::min(n_batch_, n - i);
    const bool last = i + m == n;
    float* out = all_logits ? logits + i * c_.vocab_size : logits;
    if (all_logits || last) forward_batch(tokens + i, m, out, all_logits);
    else forward_batch(tokens + i, m, nullptr, false);
  }
}

void Deepseek2Session::forward_batch(const int32_t* tokens, int64_t n, float* logits, bool all_logits) {
  const int64_t D = c_.hidden_size;
  const Deepseek2Weights& w = model_.weights();
  // x = embedding rows (ggml get_rows dequantizes the stored rows)
  for (int64_t t = 0; t < n; ++t) dequantize_row_ref(w.token_embd.type, w.token_embd.row(tokens[t]), &x_[sz(t * D)], D);

  for (int64_t il = 0; il < c_.num_hidden_layers; ++il) {
    const LayerWeights& L = w.layers[sz(il)];
    // h = RMSNorm(x); x += MLA(h)
    for (int64_t t = 0; t < n; ++t) rms_norm(&x_[sz(t * D)], L.attn_norm, D, c_.rms_norm_eps, &h_[sz(t * D)]);
    mla_attention(il, L.mla, n);
    for (int64_t i = 0; i < n * D; ++i) x_[sz(i)] += out_[sz(i)];
    // h = RMSNorm(x); x += FFN(h), dense or shared + routed experts
    for (int64_t t = 0; t < n; ++t) rms_norm(&x_[sz(t * D)], L.ffn_norm, D, c_.rms_norm_eps, &h_[sz(t * D)]);
    if (const auto* dense = std::get_if<FfnWeights>(&L.ffn)) ffn_dense(*dense, h_.data(), n, out_.data());
    else moe_ffn(il, std::get<MoeWeights>(L.ffn), n);
    for (int64_t i = 0; i < n * D; ++i) x_[sz(i)] += out_[sz(i)];
  }
  n_past_ += n;
  if (!logits) return;
  // logits = W_out RMSNorm(x), for every token or the last one
  const int64_t first = all_logits ? 0 : n - 1;
  for (int64_t t = first; t < n; ++t) rms_norm(&x_[sz(t * D)], w.output_norm, D, c_.rms_norm_eps, &h_[sz(t * D)]);
  mm(w.output, &h_[sz(first * D)], n - first, logits);
}

// Multi-head Latent Attention (DeepSeek-V2 §2.1), absorbed form: queries are
// moved into the latent space through W_UK (attn_k_b) so scores are taken
// directly against the cached c_kv, and the attention output is lifted out
// of the latent space through W_UV (attn_v_b) afterwards.
void Deepseek2Session::mla_attention(int64_t il, const MlaWeights& m, int64_t n) {
  const int64_t H = c_.num_attention_heads, R = c_.kv_lora_rank, P = c_.qk_rope_head_dim;
  const int64_t NOPE = c_.qk_nope_head_dim, QK = c_.qk_head_dim(), V = c_.v_head_dim;
  const float* freqs = model_.rope_freqs().data();
  const float rope_mscale = c_.rope_mscale();

  // q = W_UQ RMSNorm(W_DQ h)  or  q = W_Q h                        (eq. 12-13)
  if (const auto* lora = std::get_if<QProjLora>(&m.q_proj)) {
    mm(lora->wq_a, h_.data(), n, q_a_.data());
    for (int64_t t = 0; t < n; ++t)
      rms_norm(&q_a_[sz(t * c_.q_lora_rank)], lora->q_a_norm, c_.q_lora_rank, c_.rms_norm_eps, &q_a_[sz(t * c_.q_lora_rank)]);
    mm(lora->wq_b, q_a_.data(), n, q_.data());
  } else {
    mm(std::get<QProjPlain>(m.q_proj).wq, h_.data(), n, q_.data());
  }
  // [c_kv | k_rope] = W_DKV h; c_kv = RMSNorm(c_kv); k_rope = RoPE(k_rope)  (eq. 9, 14)
  mm(m.wkv_a, h_.data(), n, kv_a_.data());
  for (int64_t t = 0; t < n; ++t) {
    const float pos = static_cast<float>(n_past_ + t);
    float* kv = &kv_a_[sz(t * (R + P))];
    float* cached = cache_.at(il, n_past_ + t);
    rms_norm(kv, m.kv_a_norm, R, c_.rms_norm_eps, cached);
    std::memcpy(cached + R, kv + R, sz(P) * sizeof(float));
    rope_pairs_apply(cached + R, P, freqs, pos, rope_mscale);
  }
  // Absorbed query per head: [W_UK^T q_nope | RoPE(q_rope)]. Heads are
  // independent: one thread per group of heads, each with its own buffers.
  pool_.parallel_for(H, [&](int64_t h0, int64_t h1, int thread) {
    float* in = head_buffer(head_in_, thread);
    float* out = head_buffer(head_out_, thread);
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t t = 0; t < n; ++t)
        std::memcpy(&in[sz(t * NOPE)], &q_[sz((t * H + h) * QK)], sz(NOPE) * sizeof(float));
      matmul_serial(m.wk_b.matrix(h), in, n, out, head_scratch(thread));  // [n][R]
      for (int64_t t = 0; t < n; ++t) {
        float* qa = &q_abs_[sz((t * H + h) * (R + P))];
        std::memcpy(qa, &out[sz(t * R)], sz(R) * sizeof(float));
        std::memcpy(qa + R, &q_[sz((t * H + h) * QK + NOPE)], sz(P) * sizeof(float));
        rope_pairs_apply(qa + R, P, freqs, static_cast<float>(n_past_ + t), rope_mscale);
      }
    }
  });
  // Scores against every cached latent (causal), softmax, latent output;
  // heads in groups that share each loaded cache row.
  const float scale = c_.softmax_scale();
  const int64_t groups = (H + kAttnHeadGroup - 1) / kAttnHeadGroup;
  // A token's cost grows with its position: jobs are taken from the last
  // token down, so the threads finish together.
  pool_.parallel_jobs(n * groups, [&](int64_t j, int thread) {
    float* sc = &scores_[sz(thread * kAttnHeadGroup * cache_.n_ctx())];
    const int64_t i = n * groups - 1 - j;
    const int64_t t = i / groups, h0 = (i % groups) * kAttnHeadGroup;
    const int64_t nh = std::min(kAttnHeadGroup, H - h0);
    mla_attend_heads(&q_abs_[sz((t * H + h0) * (R + P))], nh, R + P, cache_.at(il, 0), R + P, n_past_ + t + 1, R + P,
                     R, scale, sc, &o_lat_[sz((t * H + h0) * R)], R);
  });
  // v = W_UV o_latent per head; out = W_O [v_1 .. v_H]               (eq. 18-19)
  pool_.parallel_for(H, [&](int64_t h0, int64_t h1, int thread) {
    float* in = head_buffer(head_in_, thread);
    float* out = head_buffer(head_out_, thread);
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t t = 0; t < n; ++t) std::memcpy(&in[sz(t * R)], &o_lat_[sz((t * H + h) * R)], sz(R) * sizeof(float));
      matmul_serial(m.wv_b.matrix(h), in, n, out, head_scratch(thread));  // [n][V]
      for (int64_t t = 0; t < n; ++t)
        std::memcpy(&attn_v_[sz((t * H + h) * V)], &out[sz(t * V)], sz(V) * sizeof(float));
    }
  });
  mm(m.wo, attn_v_.data(), n, out_.data());
}

// FFN(x) = W_down(silu(W_gate x) * W_up x)
void Deepseek2Session::ffn_dense(const FfnWeights& f, const float* x, int64_t n, float* out) {
  const int64_t F = f.gate.ne[1];
  mm(f.gate, x, n, ffn_g_.data());
  mm(f.up, x, n, ffn_u_.data());
  swiglu(ffn_g_.data(), ffn_u_.data(), n * F, ffn_g_.data());
  mm(f.down, ffn_g_.data(), n, out);
}

// DeepSeekMoE (DeepSeek-V2 §2.2): shared experts for every token plus the
// top-k routed experts weighted by the router. Tokens are grouped by expert
// so each expert's weights are read once per batch.
void Deepseek2Session::moe_ffn(int64_t il, const MoeWeights& e, int64_t n) {
  const int64_t D = c_.hidden_size, E = c_.n_routed_experts, K = c_.num_experts_per_tok;
  mm(e.router, h_.data(), n, router_.data());
  MoeRouteParams rp;
  rp.n_experts = E;
  rp.top_k = K;
  rp.n_group = c_.n_group;
  rp.topk_group = c_.topk_group;
  rp.scoring = c_.scoring_func;
  rp.bias = e.score_bias;
  rp.norm_topk_prob = c_.norm_topk_prob;
  rp.routed_scaling_factor = c_.routed_scaling_factor;
  for (int64_t t = 0; t < n; ++t)
    moe_route_topk(rp, &router_[sz(t * E)], &route_ids_[sz(t * K)], &route_w_[sz(t * K)], route_scratch_.data());
  uint64_t* counts = &expert_counts_[sz(il * E)];
  for (int64_t i = 0; i < n * K; ++i) ++counts[route_ids_[sz(i)]];

  // Each expert runs once over the tokens routed to it; its output for token
  // t in top-k slot k lands in slot_out_[t][k]. The weighted sum is then taken
  // per token in slot order, as llama.cpp adds its [K][D] expert outputs, so
  // the float rounding matches.
  experts_.run(e.gate_exps, e.up_exps, e.down_exps, h_.data(), n, route_ids_.data(), K, slot_out_.data(), pool_);
  for (int64_t t = 0; t < n; ++t) {
    float* o = &out_[sz(t * D)];
    for (int64_t k = 0; k < K; ++k) {
      const float wgt = route_w_[sz(t * K + k)];
      const float* y = &slot_out_[sz((t * K + k) * D)];
      if (k == 0) for (int64_t j = 0; j < D; ++j) o[j] = wgt * y[j];
      else for (int64_t j = 0; j < D; ++j) o[j] += wgt * y[j];
    }
  }
  if (e.shared) {
    ffn_dense(*e.shared, h_.data(), n, ye_.data());
    for (int64_t i = 0; i < n * D; ++i) out_[sz(i)] += ye_[sz(i)];
  }
}

}  // namespace moe
