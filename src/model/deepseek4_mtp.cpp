// DeepSeek-V4's multi-token-prediction module as a draft model, from an MTP
// companion GGUF (ik_llama.cpp's layout and graph, build_deepseek4.cpp;
// DeepSeek-V4's MTPBlock).
//
// V4's residual is hc streams, and so is the module's input: position i
// pairs the trunk's final streams X_i (after the last layer, before the
// hyper-connection head) with the token at i+1, stream by stream:
//   x_i,s = W_eh [RMSNorm_e(Emb(t_{i+1})); RMSNorm_h(X_i,s)]
// then one V4 block (its own cache of the layer kind compress_ratios[N]
// says) and its own head: logits = W_out RMSNorm_head(HC_head'(x)), the
// trunk's output matrix. Everything else is deepseek2_mtp.cpp's scheme: the
// module follows the trunk lazily, a step records its streams and the next
// step (or a draft) sends every pair whose next token is known through the
// module in one batch; its rows only come from accepted tokens, so a
// rejected draft needs no rollback there; chained drafts (n_draft > 1) feed
// the block its own output streams at positions past the trunk, which the
// accepted rows later overwrite (the rings keep n_rows_ positions of slack).
// Where hidden states are gone (a loaded saved cache, a truncation older
// than the last step) the module skips those positions: its drafts there
// are worse, what the trunk computes is unchanged.
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
  mtp_pos_.assign(sz(n_seqs), 0);
  pending_pos_.assign(sz(n_seqs), -1);
  hid_ = be_->alloc(n_rows_, hc * D);
  pending_ = be_->alloc(n_seqs, hc * D);
  mtp_cat_ = be_->alloc(n_rows_ * hc, 2 * D);
  mtp_chain_ = be_->alloc(n_seqs, hc * D);
  mtp_logits_.resize(sz(n_seqs * c_.vocab_size));
}

void Deepseek4Session::mtp_record_step(const int32_t* tokens, const std::vector<SpanAt>& at, int64_t n) {
  be_->copy_rows(x_, hid_, n);  // X after the last layer, before the head gathers rows in x_
  last_tokens_.assign(tokens, tokens + n);
  last_spans_ = at;
}

Act Deepseek4Session::mtp_hidden_at(int64_t s, int64_t q) const {
  for (const SpanAt& sp : last_spans_)
    if (sp.seq == s && q >= sp.pos0 && q < sp.pos0 + sp.n && q < seq_pos(s)) return hid_.rows_from(sp.r0 + q - sp.pos0, 1);
  if (pending_pos_[sz(s)] == q && q < seq_pos(s)) return pending_.rows_from(s, 1);
  return Act{};
}

int32_t Deepseek4Session::mtp_token_at(int64_t s, int64_t q) const {
  for (const SpanAt& sp : last_spans_)
    if (sp.seq == s && q >= sp.pos0 && q < sp.pos0 + sp.n && q < seq_pos(s)) return last_tokens_[sz(sp.r0 + q - sp.pos0)];
  return -1;
}

int64_t Deepseek4Session::mtp_gather(int32_t s, int32_t next_at_end, std::vector<SpanAt>& at,
                                     std::vector<int32_t>& tokens, int64_t row) {
  const int64_t end = seq_pos(s);
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
  const int64_t q0 = q, row0 = row, hc = c_.hc, D = c_.hidden_size;
  Act h = mtp_cat_;  // second half of each row: a stream of the hidden state
  h.data += D;
  h.cols = D;
  for (; q < end && row < n_rows_; ++q, ++row) {
    const Act hq = mtp_hidden_at(s, q);
    const int32_t next = q + 1 < end ? mtp_token_at(s, q + 1) : next_at_end;
    if (!hq.data || next < 0) break;
    be_->copy_rows(hq.reshaped(D), h.rows_from(row * hc, hc), hc);
    tokens.push_back(next);
  }
  if (q > q0) at.push_back({s, q0, q - q0, row0});
  return q - q0;
}

void Deepseek4Session::mtp_forward(const int32_t* next_tokens, const std::vector<SpanAt>& at, int64_t n) {
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

void Deepseek4Session::mtp_catch_up(const std::vector<std::pair<int32_t, int32_t>>& seq_first_next) {
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
    const int64_t last = seq_pos(s) - 1;
    if (next < 0 && last >= 0 && pending_pos_[sz(s)] != last) {
      const Act hq = mtp_hidden_at(s, last);
      if (hq.data) {
        be_->copy_rows(hq, pending_.rows_from(s, 1), 1);
        pending_pos_[sz(s)] = last;
      }
    }
  }
  if (row > 0) {
    mtp_forward(tokens.data(), at, row);
    for (const SpanAt& sp : at) mtp_pos_[sz(sp.seq)] = sp.pos0 + sp.n;
  }
}

void Deepseek4Session::mtp_draft_many(std::vector<DraftAsk>& asks) {
  for (DraftAsk& a : asks) a.n_out = 0;
  if (!mtp_) return;
  // Every asking sequence's pending pairs, in one batch; a sequence whose
  // pair at p - 1 is out of reach drafts nothing this step.
  std::vector<SpanAt> at;
  std::vector<int32_t> tokens;
  std::vector<DraftAsk*> who;  // the asks that draft, in row order
  std::vector<int64_t> rows;   // the row of each one's pair at p - 1
  std::vector<int64_t> pos;    // each one's p
  std::vector<bool> seen(sz(n_seq()), false);
  int64_t row = 0;
  for (DraftAsk& a : asks) {
    const int64_t s = a.seq;
    if (s < 0 || s >= n_seq() || seen[sz(s)] || a.next < 0 || a.next >= c_.vocab_size || !a.drafts) continue;
    seen[sz(s)] = true;
    const int64_t p = seq_pos(s);
    const int64_t n_draft = std::min({a.n_draft, n_ctx_ - p - 1, n_rows_ - 1});  // [next, drafts...] must fit
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
  be_->set_batch_invariant(who.size() > 1);
  Backend& be = *be_;
  const Deepseek4MtpWeights& m = *mtp_;
  const int64_t V = c_.vocab_size, hc = c_.hc, D = c_.hidden_size;
  // drafts[k] of each ask: the argmax of the module's head over its row of
  // x_ (kept in mtp_chain_, where a chained draft continues from).
  const auto draft_k = [&](const std::vector<DraftAsk*>& asking, const std::vector<int64_t>& x_rows, int64_t k) {
    const int64_t r = static_cast<int64_t>(asking.size());
    for (int64_t i = 0; i < r; ++i) be.copy_rows(x_.rows_from(x_rows[sz(i)], 1), mtp_chain_.rows_from(i, 1), 1);
    const Act head_mix = mix_.reshaped(hc);
    be.rms_norm(mtp_chain_, TensorView{}, c_.rms_norm_eps, r, xn_);
    be.matmul(m.hc_head.fn, xn_, r, head_mix);
    be.hc_head(hc_params(m.hc_head), mtp_chain_, head_mix, r, h_);
    be.rms_norm(h_, m.head_norm, c_.rms_norm_eps, r, h_);
    be.output_head(w_.output, h_, r, mtp_logits_.data());
    for (int64_t i = 0; i < r; ++i) {
      const float* l = mtp_logits_.data() + i * V;
      asking[sz(i)]->drafts[k] = static_cast<int32_t>(std::max_element(l, l + V) - l);
    }
  };
  mtp_forward(tokens.data(), at, row);
  for (size_t i = 0; i < who.size(); ++i) mtp_pos_[sz(who[i]->seq)] = pos[i];
  draft_k(who, rows, 0);
  Act h = mtp_cat_;
  h.data += D;
  h.cols = D;
  for (int64_t k = 1;; ++k) {  // chained: the block's own output streams as the hidden state
    std::vector<DraftAsk*> next_who;
    std::vector<int64_t> next_pos;
    at.clear();
    tokens.clear();
    for (size_t i = 0; i < who.size(); ++i) {
      if (who[i]->n_out <= k) continue;
      const int64_t j = static_cast<int64_t>(next_who.size());
      be.copy_rows(mtp_chain_.rows_from(static_cast<int64_t>(i), 1).reshaped(D), h.rows_from(j * hc, hc), hc);
      tokens.push_back(who[i]->drafts[k - 1]);
      at.push_back({static_cast<int32_t>(who[i]->seq), pos[i] + k - 1, 1, j});
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
  be_->set_batch_invariant(false);
}

void Deepseek4Session::mtp_truncate(int64_t s, int64_t n) {
  // Row n - 1 paired X_{n-1} with the token at n, which is gone.
  mtp_pos_[sz(s)] = std::min(mtp_pos_[sz(s)], std::max<int64_t>(0, n - 1));
  if (pending_pos_[sz(s)] >= n) pending_pos_[sz(s)] = -1;
}

void Deepseek4Session::mtp_reset(int64_t s) {
  for (int64_t i = 0; i < n_seq(); ++i) {
    if (s >= 0 && i != s) continue;
    mtp_pos_[sz(i)] = 0;
    pending_pos_[sz(i)] = -1;
    for (SpanAt& sp : last_spans_)
      if (sp.seq == i) sp.seq = -1;
  }
}

}  // namespace moe
