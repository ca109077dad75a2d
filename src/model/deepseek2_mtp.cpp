// The multi-token-prediction module of a DeepSeek-V3 file as a draft model
// (DeepSeek-V3 §2.2; vLLM's and SGLang's use of it for speculative decoding).
//
// The module's position i pairs the trunk's final hidden state h_i (after
// the output RMSNorm, as it was trained) with the token at i+1:
//   x_i = W_eh [RMSNorm_e(Emb(t_{i+1})); RMSNorm_h(h_i)]
// then one decoder block with a latent cache of its own, and the head
// predicts t_{i+2}. It follows the trunk lazily: a trunk step records its
// hidden states; the next step (or a draft) sends every pair whose next token
// is known through the module in one batch before they are overwritten. Its
// rows only ever come from accepted tokens, so a rejected draft needs no
// rollback there; chained drafts (n_draft > 1, the block fed its own output,
// as vLLM chains it) use rows past the trunk that are dropped at once.
//
// Where the hidden states of some positions are gone (a loaded prompt cache,
// a truncation older than the last step) the module skips them and those
// rows of its cache stay as they were: drafts there are worse, what the
// trunk computes is unchanged.
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
  mtp_pos_.assign(sz(n_seq), 0);
  pending_pos_.assign(sz(n_seq), -1);
  hid_ = be_->alloc(n_rows_, D);
  pending_ = be_->alloc(n_seq, D);
  mtp_cat_ = be_->alloc(n_rows_, 2 * D);
  mtp_chain_ = be_->alloc(n_seq, D);
  mtp_logits_.resize(sz(n_seq * c_.vocab_size));
}

void Deepseek2Session::mtp_record_step(const int32_t* tokens, const std::vector<SpanAt>& at, int64_t n) {
  be_->rms_norm(x_, w_.output_norm, c_.rms_norm_eps, n, hid_);  // h = RMSNorm(x), the module's input
  last_tokens_.assign(tokens, tokens + n);
  last_spans_ = at;
}

Act Deepseek2Session::mtp_hidden_at(int64_t s, int64_t q) const {
  int64_t first = 0;
  for (const SpanAt& sp : last_spans_) {
    if (sp.seq == s && q >= sp.pos0 && q < sp.pos0 + sp.n && q < seq_pos_[sz(s)]) return hid_.rows_from(first + q - sp.pos0, 1);
    first += sp.n;
  }
  if (pending_pos_[sz(s)] == q && q < seq_pos_[sz(s)]) return pending_.rows_from(s, 1);
  return Act{};
}

int32_t Deepseek2Session::mtp_token_at(int64_t s, int64_t q) const {
  int64_t first = 0;
  for (const SpanAt& sp : last_spans_) {
    if (sp.seq == s && q >= sp.pos0 && q < sp.pos0 + sp.n && q < seq_pos_[sz(s)]) return last_tokens_[sz(first + q - sp.pos0)];
    first += sp.n;
  }
  return -1;
}

int64_t Deepseek2Session::mtp_gather(int32_t s, int32_t next_at_end, std::vector<SpanAt>& at,
                                     std::vector<int32_t>& tokens, int64_t row) {
  const int64_t end = seq_pos_[sz(s)];
  int64_t q = mtp_pos_[sz(s)];
  // Skip to the first position whose hidden state is at hand.
  if (q < end && !mtp_hidden_at(s, q).data) {
    int64_t first = end;
    if (pending_pos_[sz(s)] >= q) first = std::min(first, pending_pos_[sz(s)]);
    for (const SpanAt& sp : last_spans_)
      if (sp.seq == s && sp.pos0 + sp.n > q) first = std::min(first, std::max(q, sp.pos0));
    q = first;
    mtp_pos_[sz(s)] = q;
  }
  const int64_t q0 = q;
  const int64_t D = c_.hidden_size;
  Act h = mtp_cat_;  // second half of each row: the hidden state
  h.data += D;
  h.cols = D;
  for (; q < end && row < mtp_cat_.rows; ++q, ++row) {
    const Act hq = mtp_hidden_at(s, q);
    const int32_t next = q + 1 < end ? mtp_token_at(s, q + 1) : next_at_end;
    if (!hq.data || next < 0) break;
    be_->copy_rows(hq, h.rows_from(row, 1), 1);
    tokens.push_back(next);
  }
  if (q > q0) at.push_back({s, q0, q - q0});
  return q - q0;
}

void Deepseek2Session::mtp_forward(const int32_t* next_tokens, const std::vector<SpanAt>& at, int64_t n) {
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
  block(m.block, c_.num_hidden_layers, mtp_cache_, 0, at, n);
}

void Deepseek2Session::mtp_catch_up(const std::vector<std::pair<int32_t, int32_t>>& seq_first_next) {
  std::vector<SpanAt> at;
  std::vector<int32_t> tokens;
  std::vector<int32_t> seqs;
  for (const SpanAt& sp : last_spans_)  // (seq -1: rows whose positions are gone)
    if (sp.seq >= 0 && std::find(seqs.begin(), seqs.end(), sp.seq) == seqs.end()) seqs.push_back(sp.seq);
  int64_t row = 0;
  for (int32_t s : seqs) {
    int32_t next = -1;
    for (const auto& [seq, t] : seq_first_next)
      if (seq == s) next = t;
    row += mtp_gather(s, next, at, tokens, row);
    // The last position waits for its next token beyond this step.
    const int64_t last = seq_pos_[sz(s)] - 1;
    if (next < 0 && last >= 0 && pending_pos_[sz(s)] != last) {
      const Act hq = mtp_hidden_at(s, last);
      if (hq.data) {
        be_->copy_rows(hq, pending_.rows_from(s, 1), 1);
        pending_pos_[sz(s)] = last;
      }
    }
  }
  if (row > 0) {  // (in the step's batch-invariant mode: the products of its pairs are its own)
    mtp_forward(tokens.data(), at, row);
    for (const SpanAt& sp : at) mtp_pos_[sz(sp.seq)] = sp.pos0 + sp.n;
  }
}

void Deepseek2Session::mtp_draft_many(std::vector<DraftAsk>& asks) {
  for (DraftAsk& a : asks) a.n_out = 0;
  if (!mtp_) return;
  // Every asking sequence's pending pairs, in one batch; a sequence whose
  // pair at p - 1 is out of reach drafts nothing this step.
  std::vector<SpanAt> at;
  std::vector<int32_t> tokens;
  std::vector<DraftAsk*> who;   // the asks that draft, in row order
  std::vector<int64_t> rows;    // the row of each one's pair at p - 1
  std::vector<int64_t> pos;     // each one's p
  std::vector<bool> seen(sz(cache_.n_seq), false);
  int64_t row = 0;
  for (DraftAsk& a : asks) {
    const int64_t s = a.seq;
    if (s < 0 || s >= cache_.n_seq || seen[sz(s)] || a.next < 0 || a.next >= c_.vocab_size || !a.drafts) continue;
    seen[sz(s)] = true;
    const int64_t p = seq_pos_[sz(s)];
    const int64_t n_draft = std::min(a.n_draft, cache_.n_ctx - p - 1);  // [next, drafts...] must fit
    if (p == 0 || n_draft <= 0) continue;
    const size_t n_at = at.size(), n_tokens = tokens.size();
    const int64_t n = mtp_gather(static_cast<int32_t>(s), a.next, at, tokens, row);
    if (n == 0 || at.back().pos0 + at.back().n != p) {
      if (n > 0) mtp_pos_[sz(s)] = at.back().pos0;
      at.resize(n_at);
      tokens.resize(n_tokens);
      continue;
    }
    row += n;
    a.n_out = n_draft;
    who.push_back(&a);
    rows.push_back(row - 1);
    pos.push_back(p);
  }
  if (who.empty()) return;
  // Each sequence's drafts as it would draft alone, whatever runs beside it.
  set_batch_invariant(who.size() > 1);
  Backend& be = *be_;
  const MtpWeights& m = *mtp_;
  const int64_t V = c_.vocab_size;
  // drafts[k] of each ask: the argmax of the head over its row of x (kept
  // in mtp_chain_, where a chained draft continues from).
  const auto draft_k = [&](const std::vector<DraftAsk*>& asking, const std::vector<int64_t>& x_rows, int64_t k) {
    const int64_t r = static_cast<int64_t>(asking.size());
    for (int64_t i = 0; i < r; ++i) be.copy_rows(x_.rows_from(x_rows[sz(i)], 1), mtp_chain_.rows_from(i, 1), 1);
    be.rms_norm(mtp_chain_, m.head_norm, c_.rms_norm_eps, r, h_);
    be.output_head(m.head, h_, r, mtp_logits_.data());
    for (int64_t i = 0; i < r; ++i) {
      const float* l = mtp_logits_.data() + i * V;
      asking[sz(i)]->drafts[k] = static_cast<int32_t>(std::max_element(l, l + V) - l);
    }
  };
  mtp_forward(tokens.data(), at, row);
  for (size_t i = 0; i < who.size(); ++i) mtp_pos_[sz(who[i]->seq)] = pos[i];
  draft_k(who, rows, 0);
  Act h = mtp_cat_;
  h.data += c_.hidden_size;
  h.cols = c_.hidden_size;
  for (int64_t k = 1;; ++k) {  // chained: the block's own output as the hidden state
    std::vector<DraftAsk*> next_who;
    std::vector<int64_t> next_pos;
    at.clear();
    tokens.clear();
    for (size_t i = 0; i < who.size(); ++i) {
      if (who[i]->n_out <= k) continue;
      const int64_t j = static_cast<int64_t>(next_who.size());
      be.copy_rows(mtp_chain_.rows_from(static_cast<int64_t>(i), 1), h.rows_from(j, 1), 1);
      tokens.push_back(who[i]->drafts[k - 1]);
      at.push_back({static_cast<int32_t>(who[i]->seq), pos[i] + k - 1, 1});
      next_who.push_back(who[i]);
      next_pos.push_back(pos[i]);
    }
    if (next_who.empty()) break;
    mtp_forward(tokens.data(), at, static_cast<int64_t>(tokens.size()));
    std::vector<int64_t> x_rows(next_who.size());
    for (size_t j = 0; j < x_rows.size(); ++j) x_rows[j] = static_cast<int64_t>(j);
    draft_k(next_who, x_rows, k);
    who = std::move(next_who);
    pos = std::move(next_pos);
  }
}

void Deepseek2Session::mtp_truncate(int64_t s, int64_t n) {
  // Row n - 1 paired h_{n-1} with the token at n, which is gone.
  mtp_pos_[sz(s)] = std::min(mtp_pos_[sz(s)], std::max<int64_t>(0, n - 1));
  if (pending_pos_[sz(s)] >= n) pending_pos_[sz(s)] = -1;
}

void Deepseek2Session::mtp_seq_copy(int64_t src, int64_t dst, int64_t n) {
  if (src == dst) return mtp_truncate(dst, n);
  const int64_t rows = std::min(mtp_pos_[sz(src)], std::max<int64_t>(0, n - 1));
  be_->copy_rows(mtp_cache_.sequence(src).layer(0), mtp_cache_.sequence(dst).layer(0), rows);
  if (c_.has_indexer()) be_->copy_rows(index_keys(src, c_.num_hidden_layers), index_keys(dst, c_.num_hidden_layers), rows);
  mtp_pos_[sz(dst)] = rows;
  pending_pos_[sz(dst)] = -1;
  const Act h = n > 0 ? mtp_hidden_at(src, n - 1) : Act{};
  if (h.data) {
    be_->copy_rows(h, pending_.rows_from(dst, 1), 1);
    pending_pos_[sz(dst)] = n - 1;
  }
}

void Deepseek2Session::mtp_seq_drop(int64_t s, int64_t p0, int64_t p1) {
  const int64_t d = p1 - p0;
  int64_t& mp = mtp_pos_[sz(s)];
  if (mp > p1) {
    LatentCache cache = mtp_cache_.sequence(s);
    be_->mla_kv_shift(mla_, cache, 0, p1, p0, mp - p1);
    if (c_.has_indexer()) be_->dsa_keys_shift(dsa_, index_keys(s, c_.num_hidden_layers), p1, p0, mp - p1);
    mp -= d;
  } else {
    mp = std::min(mp, p0);
  }
  int64_t& pp = pending_pos_[sz(s)];
  pp = pp >= p1 ? pp - d : pp >= p0 ? -1 : pp;
  // The last step's rows of s move with their positions, or are gone.
  for (SpanAt& sp : last_spans_)
    if (sp.seq == s && sp.pos0 + sp.n > p0) {
      if (sp.pos0 >= p1) sp.pos0 -= d;
      else sp.seq = -1;
    }
}

void Deepseek2Session::mtp_reset(int64_t s) {
  for (int64_t i = 0; i < cache_.n_seq; ++i) {
    if (s >= 0 && i != s) continue;
    mtp_pos_[sz(i)] = 0;
    pending_pos_[sz(i)] = -1;
    for (SpanAt& sp : last_spans_)
      if (sp.seq == i) sp.seq = -1;
  }
}

}  // namespace moe
