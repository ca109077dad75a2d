#include "model/mtp_follower.h"

#include <algorithm>

namespace moe {

namespace {
size_t sz(int64_t n) { return static_cast<size_t>(n); }
}  // namespace

MtpFollower::MtpFollower(MtpModule& module, Backend& be, Act hid, Act pending, int64_t n_seq, int64_t n_ctx,
                         int64_t n_rows, int64_t n_vocab)
    : m_(module), be_(be), hid_(hid), pending_(pending), n_ctx_(n_ctx), n_rows_(n_rows), n_vocab_(n_vocab),
      pos_(sz(n_seq), 0), pending_pos_(sz(n_seq), -1) {}

void MtpFollower::record(const int32_t* tokens, const std::vector<MtpSpan>& at, int64_t n) {
  last_tokens_.assign(tokens, tokens + n);
  last_spans_ = at;
}

Act MtpFollower::hidden_at(int64_t s, int64_t q) const {
  if (q >= m_.mtp_seq_pos(s)) return Act{};
  for (const MtpSpan& sp : last_spans_)
    if (sp.seq == s && q >= sp.pos0 && q < sp.pos0 + sp.n) return hid_.rows_from(sp.r0 + q - sp.pos0, 1);
  if (pending_pos_[sz(s)] == q) return pending_.rows_from(s, 1);
  return Act{};
}

int32_t MtpFollower::token_at(int64_t s, int64_t q) const {
  if (q >= m_.mtp_seq_pos(s)) return -1;
  for (const MtpSpan& sp : last_spans_)
    if (sp.seq == s && q >= sp.pos0 && q < sp.pos0 + sp.n) return last_tokens_[sz(sp.r0 + q - sp.pos0)];
  return -1;
}

int64_t MtpFollower::gather(int32_t s, int32_t next_at_end, std::vector<MtpSpan>& at, std::vector<int32_t>& tokens,
                            int64_t row) {
  const int64_t end = m_.mtp_seq_pos(s);
  int64_t q = pos_[sz(s)];
  // Skip to the first position whose hidden state is at hand.
  if (q < end && !hidden_at(s, q).data) {
    int64_t first = end;
    if (pending_pos_[sz(s)] >= q) first = std::min(first, pending_pos_[sz(s)]);
    for (const MtpSpan& sp : last_spans_)
      if (sp.seq == s && sp.pos0 + sp.n > q) first = std::min(first, std::max(q, sp.pos0));
    q = first;
    pos_[sz(s)] = q;
  }
  const int64_t q0 = q, row0 = row;
  for (; q < end && row < n_rows_; ++q, ++row) {
    const Act hq = hidden_at(s, q);
    const int32_t next = q + 1 < end ? token_at(s, q + 1) : next_at_end;
    if (!hq.data || next < 0) break;
    m_.mtp_stage_hidden(hq, row);
    tokens.push_back(next);
  }
  if (q > q0) at.push_back({s, q0, q - q0, row0});
  return q - q0;
}

void MtpFollower::catch_up(const std::vector<std::pair<int32_t, int32_t>>& seq_first_next) {
  std::vector<MtpSpan> at;
  std::vector<int32_t> tokens;
  std::vector<int32_t> seqs;
  for (const MtpSpan& sp : last_spans_)  // (seq -1: rows whose positions are gone)
    if (sp.seq >= 0 && std::find(seqs.begin(), seqs.end(), sp.seq) == seqs.end()) seqs.push_back(sp.seq);
  int64_t row = 0;
  for (int32_t s : seqs) {
    int32_t next = -1;
    for (const auto& [seq, t] : seq_first_next)
      if (seq == s) next = t;
    row += gather(s, next, at, tokens, row);
    // The last position waits for its next token beyond this step.
    const int64_t last = m_.mtp_seq_pos(s) - 1;
    if (next < 0 && last >= 0 && pending_pos_[sz(s)] != last) {
      const Act hq = hidden_at(s, last);
      if (hq.data) {
        be_.copy_rows(hq, pending_.rows_from(s, 1), 1);
        pending_pos_[sz(s)] = last;
      }
    }
  }
  if (row > 0) {  // (in the step's batch-invariant mode: the products of its pairs are its own)
    m_.mtp_block(tokens.data(), at, row);
    for (const MtpSpan& sp : at) pos_[sz(sp.seq)] = sp.pos0 + sp.n;
  }
}

void MtpFollower::draft_many(std::vector<DraftAsk>& asks) {
  for (DraftAsk& a : asks) a.n_out = 0;
  // Every asking sequence's pending pairs, in one batch; a sequence whose
  // pair at p - 1 is out of reach drafts nothing this step.
  std::vector<MtpSpan> at;
  std::vector<int32_t> tokens;
  std::vector<DraftAsk*> who;  // the asks that draft, in row order
  std::vector<int64_t> rows;   // the row of each one's pair at p - 1
  std::vector<int64_t> pos;    // each one's p
  std::vector<bool> seen(pos_.size(), false);
  int64_t row = 0;
  for (DraftAsk& a : asks) {
    const int64_t s = a.seq;
    if (s < 0 || s >= static_cast<int64_t>(pos_.size()) || seen[sz(s)] || a.next < 0 || a.next >= n_vocab_ ||
        !a.drafts)
      continue;
    seen[sz(s)] = true;
    const int64_t p = m_.mtp_seq_pos(s);
    // [next, drafts...] must fit the context; chained drafts the module's rows.
    const int64_t n_draft = std::min({a.n_draft, n_ctx_ - p - 1, n_rows_ - 1});
    if (p == 0 || n_draft <= 0) continue;
    const size_t n_at = at.size(), n_tokens = tokens.size();
    const int64_t n = gather(static_cast<int32_t>(s), a.next, at, tokens, row);
    if (n == 0 || at.back().pos0 + at.back().n != p) {
      if (n > 0) pos_[sz(s)] = at.back().pos0;
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
  m_.mtp_set_batch_invariant(who.size() > 1);
  // drafts[k] of each ask: the head's argmax over its row of the block's output.
  const auto draft_k = [&](const std::vector<DraftAsk*>& asking, const std::vector<int64_t>& x_rows, int64_t k) {
    const float* logits = m_.mtp_head(x_rows);
    for (size_t i = 0; i < asking.size(); ++i) {
      const float* l = logits + static_cast<int64_t>(i) * n_vocab_;
      asking[i]->drafts[k] = static_cast<int32_t>(std::max_element(l, l + n_vocab_) - l);
    }
  };
  m_.mtp_block(tokens.data(), at, row);
  for (size_t i = 0; i < who.size(); ++i) pos_[sz(who[i]->seq)] = pos[i];
  draft_k(who, rows, 0);
  for (int64_t k = 1;; ++k) {  // chained: the block's own output as the hidden state
    std::vector<DraftAsk*> next_who;
    std::vector<int64_t> next_pos;
    at.clear();
    tokens.clear();
    for (size_t i = 0; i < who.size(); ++i) {
      if (who[i]->n_out <= k) continue;
      const int64_t j = static_cast<int64_t>(next_who.size());
      m_.mtp_stage_hidden(m_.mtp_chain_row(static_cast<int64_t>(i)), j);
      tokens.push_back(who[i]->drafts[k - 1]);
      at.push_back({static_cast<int32_t>(who[i]->seq), pos[i] + k - 1, 1, j});
      next_who.push_back(who[i]);
      next_pos.push_back(pos[i]);
    }
    if (next_who.empty()) break;
    m_.mtp_block(tokens.data(), at, static_cast<int64_t>(tokens.size()));
    std::vector<int64_t> x_rows(next_who.size());
    for (size_t j = 0; j < x_rows.size(); ++j) x_rows[j] = static_cast<int64_t>(j);
    draft_k(next_who, x_rows, k);
    who = std::move(next_who);
    pos = std::move(next_pos);
  }
  m_.mtp_set_batch_invariant(false);
}

void MtpFollower::truncate(int64_t s, int64_t n) {
  // Row n - 1 paired h_{n-1} with the token at n, which is gone.
  pos_[sz(s)] = std::min(pos_[sz(s)], std::max<int64_t>(0, n - 1));
  if (pending_pos_[sz(s)] >= n) pending_pos_[sz(s)] = -1;
}

int64_t MtpFollower::copy(int64_t src, int64_t dst, int64_t n) {
  const int64_t rows = std::min(pos_[sz(src)], std::max<int64_t>(0, n - 1));  // row n - 1 pairs with a token past n
  pos_[sz(dst)] = rows;
  pending_pos_[sz(dst)] = -1;
  for (MtpSpan& sp : last_spans_)  // dst's own rows of the last step are not its positions any more
    if (sp.seq == dst) sp.seq = -1;
  const Act h = n > 0 ? hidden_at(src, n - 1) : Act{};
  if (h.data) {
    be_.copy_rows(h, pending_.rows_from(dst, 1), 1);
    pending_pos_[sz(dst)] = n - 1;
  }
  return rows;
}

int64_t MtpFollower::drop(int64_t s, int64_t p0, int64_t p1) {
  const int64_t d = p1 - p0;
  int64_t& mp = pos_[sz(s)];
  int64_t moved = 0;
  if (mp > p1) {
    moved = mp - p1;
    mp -= d;
  } else {
    mp = std::min(mp, p0);
  }
  int64_t& pp = pending_pos_[sz(s)];
  pp = pp >= p1 ? pp - d : pp >= p0 ? -1 : pp;
  // The last step's rows of s move with their positions, or are gone.
  for (MtpSpan& sp : last_spans_)
    if (sp.seq == s && sp.pos0 + sp.n > p0) {
      if (sp.pos0 >= p1) sp.pos0 -= d;
      else sp.seq = -1;
    }
  return moved;
}

void MtpFollower::reset(int64_t s) {
  for (int64_t i = 0; i < static_cast<int64_t>(pos_.size()); ++i) {
    if (s >= 0 && i != s) continue;
    pos_[sz(i)] = 0;
    pending_pos_[sz(i)] = -1;
    for (MtpSpan& sp : last_spans_)
      if (sp.seq == i) sp.seq = -1;
  }
}

}  // namespace moe
