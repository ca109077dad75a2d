// DeepSeek-V4's multi-token-prediction module as a draft model, from an MTP
// companion GGUF (ik_llama.cpp's layout and graph, build_deepseek4.cpp;
// DeepSeek-V4's MTPBlock): its arithmetic over this session's backend. How
// it follows the trunk and drafts is MtpFollower's (mtp_follower.h).
//
// V4's residual is hc streams, and so is the module's input: position i
// pairs the trunk's final streams X_i (after the last layer, before the
// hyper-connection head) with the token at i+1, stream by stream:
//   x_i,s = W_eh [RMSNorm_e(Emb(t_{i+1})); RMSNorm_h(X_i,s)]
// then one V4 block (its own cache of the layer kind compress_ratios[N]
// says) and its own head: logits = W_out RMSNorm_head(HC_head'(x)), the
// trunk's output matrix. Chained drafts write the module's rings at
// positions past the trunk; the accepted rows overwrite them later, and
// the rings keep n_rows_ positions of slack for them.
#include <algorithm>

#include "core/error.h"
#include "model/deepseek4.h"

namespace moe {

namespace {
size_t sz(int64_t n) { return static_cast<size_t>(n); }
}  // namespace

void Deepseek4Session::mtp_init() {
  mtp_ = model_.mtp();
  mc_ = &model_.mtp_config();
  const int64_t n_seqs = n_seq(), D = c_.hidden_size, hc = c_.hc;
  for (int64_t s = 0; s < n_seqs; ++s) mtp_cache_.push_back(alloc_layer_cache(*mc_, mc_->num_hidden_layers));
  hid_ = be_->alloc(n_rows_, hc * D);
  pending_ = be_->alloc(n_seqs, hc * D);
  mtp_cat_ = be_->alloc(n_rows_ * hc, 2 * D);
  mtp_chain_ = be_->alloc(n_seqs, hc * D);
  mtp_logits_.resize(sz(n_seqs * c_.vocab_size));
  mtp_follow_ = std::make_unique<MtpFollower>(static_cast<MtpModule&>(*this), *be_, hid_, pending_, n_seqs, n_ctx_,
                                              n_rows_, c_.vocab_size);
}

void Deepseek4Session::mtp_stage_hidden(const Act& h, int64_t row) {
  const int64_t D = c_.hidden_size, hc = c_.hc;
  Act half = mtp_cat_;  // second half of each row: a stream of the hidden state
  half.data += D;
  half.cols = D;
  be_->copy_rows(h.reshaped(D), half.rows_from(row * hc, hc), hc);
}

void Deepseek4Session::mtp_block(const int32_t* next_tokens, const std::vector<MtpSpan>& at, int64_t n) {
  Backend& be = *be_;
  const Deepseek4MtpWeights& m = *mtp_;
  const float eps = c_.rms_norm_eps;
  const int64_t D = c_.hidden_size, hc = c_.hc;
  mtp_tokens_.resize(sz(n * hc));
  for (int64_t r = 0; r < n; ++r) std::fill_n(mtp_tokens_.begin() + r * hc, hc, next_tokens[r]);
  Act e = mtp_cat_, h = mtp_cat_;
  e.cols = D;
  h.data += D;
  h.cols = D;
  be.embed(w_.token_embd, mtp_tokens_.data(), n * hc, e);  // Emb(t_{i+1}), once per stream
  be.rms_norm(e, m.enorm, eps, n * hc, e);                 // RMSNorm_e
  be.rms_norm(h, m.hnorm, eps, n * hc, h);                 // RMSNorm_h(X_i,s)
  be.matmul(m.eh_proj, mtp_cat_, n * hc, x_.reshaped(D));  // x_i,s = W_eh [e; h]
  const Dsv4LayerWeights& L = m.block;
  const int64_t il = mc_->num_hidden_layers;
  hc_pre(L.hc_attn, L.attn_norm, n);
  attention(L, *mc_, il, at, n);
  be.hc_post(hc_params(L.hc_attn), out_, post_, comb_, n, x_);
  hc_pre(L.hc_ffn, L.ffn_norm, n);
  moe(L, *mc_, il, next_tokens, n);
  be.hc_post(hc_params(L.hc_ffn), out_, post_, comb_, n, x_);
}

const float* Deepseek4Session::mtp_head(const std::vector<int64_t>& x_rows) {
  Backend& be = *be_;
  const Deepseek4MtpWeights& m = *mtp_;
  const int64_t r = static_cast<int64_t>(x_rows.size());
  for (int64_t i = 0; i < r; ++i) be.copy_rows(x_.rows_from(x_rows[sz(i)], 1), mtp_chain_.rows_from(i, 1), 1);
  const Act head_mix = mix_.reshaped(c_.hc);
  be.rms_norm(mtp_chain_, TensorView{}, c_.rms_norm_eps, r, xn_);
  be.matmul(m.hc_head.fn, xn_, r, head_mix);
  be.hc_head(hc_params(m.hc_head), mtp_chain_, head_mix, r, h_);
  be.rms_norm(h_, m.head_norm, c_.rms_norm_eps, r, h_);
  be.output_head(w_.output, h_, r, mtp_logits_.data());
  return mtp_logits_.data();
}

void Deepseek4Session::mtp_draft_many(std::vector<DraftAsk>& asks) {
  if (!mtp_) {
    for (DraftAsk& a : asks) a.n_out = 0;
    return;
  }
  mtp_follow_->draft_many(asks);
}

}  // namespace moe
