// The multi-token-prediction module of a DeepSeek-V3 file as a draft model
// (DeepSeek-V3 §2.2): its arithmetic over this session's backend. How it
// follows the trunk and drafts is MtpFollower's (mtp_follower.h).
//
// The module's position i pairs the trunk's final hidden state h_i (after
// the output RMSNorm, as it was trained) with the token at i+1:
//   x_i = W_eh [RMSNorm_e(Emb(t_{i+1})); RMSNorm_h(h_i)]
// then one decoder block with a latent cache of its own, and the head
// predicts t_{i+2}.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/deepseek2.h"

namespace moe {

namespace {
size_t sz(int64_t n) { return static_cast<size_t>(n); }
}  // namespace

void Deepseek2Session::mtp_init(const SessionOptions& o) {
  if (!mtp_) return;
  const int64_t n_seq = cache_.n_seq, D = c_.hidden_size;
  mtp_cache_.type = o.cache_type;
  mtp_cache_.n_layers = 1;
  mtp_cache_.n_ctx = cache_.n_ctx;
  mtp_cache_.n_seq = n_seq;
  mtp_cache_.rows = be_->alloc(n_seq * cache_.n_ctx, LatentCache::storage_cols(o.cache_type, mla_.latent_dim()));
  hid_ = be_->alloc(n_rows_, D);
  pending_ = be_->alloc(n_seq, D);
  mtp_cat_ = be_->alloc(n_rows_, 2 * D);
  mtp_chain_ = be_->alloc(n_seq, D);
  mtp_logits_.resize(sz(n_seq * c_.vocab_size));
  mtp_follow_ = std::make_unique<MtpFollower>(static_cast<MtpModule&>(*this), *be_, hid_, pending_, n_seq, cache_.n_ctx,
                                              n_rows_, c_.vocab_size);
}

void Deepseek2Session::mtp_record_step(const int32_t* tokens, const std::vector<SpanAt>& at, int64_t n) {
  be_->rms_norm(x_, w_.output_norm, c_.rms_norm_eps, n, hid_);  // h = RMSNorm(x), the module's input
  std::vector<MtpSpan> spans;
  int64_t r0 = 0;
  for (const SpanAt& sp : at) {
    spans.push_back({sp.seq, sp.pos0, sp.n, r0});
    r0 += sp.n;
  }
  mtp_follow_->record(tokens, spans, n);
}

void Deepseek2Session::mtp_stage_hidden(const Act& h, int64_t row) {
  Act half = mtp_cat_;  // second half of each row: the hidden state
  half.data += c_.hidden_size;
  half.cols = c_.hidden_size;
  be_->copy_rows(h, half.rows_from(row, 1), 1);
}

void Deepseek2Session::mtp_block(const int32_t* next_tokens, const std::vector<MtpSpan>& spans, int64_t n) {
  Backend& be = *be_;
  const MtpWeights& m = *mtp_;
  const float eps = c_.rms_norm_eps;
  const int64_t D = c_.hidden_size;
  Act e = mtp_cat_, h = mtp_cat_;
  e.cols = D;
  h.data += D;
  h.cols = D;
  be.embed(m.embed, next_tokens, n, e);       // Emb(t_{i+1})
  be.rms_norm(e, m.enorm, eps, n, e);         // RMSNorm_e
  be.rms_norm(h, m.hnorm, eps, n, h);         // RMSNorm_h(h_i)
  be.matmul(m.eh_proj, mtp_cat_, n, x_);      // x = W_eh [e; h]
  std::vector<SpanAt> at;
  for (const MtpSpan& sp : spans) at.push_back({sp.seq, sp.pos0, sp.n});
  block(m.block, c_.num_hidden_layers, mtp_cache_, 0, at, n);
}

const float* Deepseek2Session::mtp_head(const std::vector<int64_t>& x_rows) {
  const int64_t r = static_cast<int64_t>(x_rows.size());
  for (int64_t i = 0; i < r; ++i) be_->copy_rows(x_.rows_from(x_rows[sz(i)], 1), mtp_chain_.rows_from(i, 1), 1);
  be_->rms_norm(mtp_chain_, mtp_->head_norm, c_.rms_norm_eps, r, h_);
  be_->output_head(mtp_->head, h_, r, mtp_logits_.data());
  return mtp_logits_.data();
}

void Deepseek2Session::mtp_draft_many(std::vector<DraftAsk>& asks) {
  if (!mtp_) {
    for (DraftAsk& a : asks) a.n_out = 0;
    return;
  }
  mtp_follow_->draft_many(asks);
}

void Deepseek2Session::mtp_seq_copy(int64_t src, int64_t dst, int64_t n) {
  if (src == dst) return mtp_truncate(dst, n);
  const int64_t rows = mtp_follow_->copy(src, dst, n);
  be_->copy_rows(mtp_cache_.sequence(src).layer(0), mtp_cache_.sequence(dst).layer(0), rows);
  if (c_.has_indexer()) be_->copy_rows(index_keys(src, c_.num_hidden_layers), index_keys(dst, c_.num_hidden_layers), rows);
}

void Deepseek2Session::mtp_seq_drop(int64_t s, int64_t p0, int64_t p1) {
  const int64_t moved = mtp_follow_->drop(s, p0, p1);
  if (moved > 0) {  // the module's rows after the hole move down with their positions
    LatentCache cache = mtp_cache_.sequence(s);
    be_->mla_kv_shift(mla_, cache, 0, p1, p0, moved);
    if (c_.has_indexer()) be_->dsa_keys_shift(dsa_, index_keys(s, c_.num_hidden_layers), p1, p0, moved);
  }
}

}  // namespace moe
