// What the generation loops need from a model's session: evaluate tokens
// into its cache and hand back logits. forward() and the rest of the first
// group are one sequence (sequence 0), positions 0..n_past()-1; the second
// group steps many sequences, each in its own slot of the cache, at once.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "runtime/prompt_cache_file.h"

namespace moe {

// A run of tokens of one sequence in a multi-sequence step: the next `n`
// tokens of sequence `seq`, at its next positions; `logits`: the logits of
// its last token are wanted; `all_logits`: those of every token of the span
// (a speculative step verifying its drafts).
struct SeqSpan {
  int32_t seq = 0;
  int64_t n = 0;
  bool logits = false;
  bool all_logits = false;
};

// One sequence's request for drafts (InferenceSession::mtp_draft_many).
struct DraftAsk {
  int64_t seq = 0;
  int32_t next = -1;          // the token chosen after its last cached position
  int64_t n_draft = 0;        // most drafts wanted
  int32_t* drafts = nullptr;  // [n_draft]
  int64_t n_out = 0;          // drafts written
};

class InferenceSession {
 public:
  virtual ~InferenceSession() = default;
  // Evaluates tokens at positions n_past() .. n_past()+n-1, appending them to
  // the cache. Writes logits for every token ([n][n_vocab]) when all_logits,
  // else for the last one only ([n_vocab]).
  virtual void forward(const int32_t* tokens, int64_t n, float* logits, bool all_logits) = 0;
  // forward(tokens, n, logits, true) with every product row computed as it
  // would be alone (Backend::set_batch_invariant): speculative decoding's
  // verify step, whose rows must be what one-token steps give, so drafts
  // never change a greedy answer.
  virtual void forward_verify(const int32_t* tokens, int64_t n, float* logits) { forward(tokens, n, logits, true); }
  virtual int64_t n_past() const = 0;
  virtual int64_t n_ctx() const = 0;
  virtual int64_t n_vocab() const = 0;
  virtual void reset() = 0;
  virtual void truncate(int64_t n) = 0;  // forget positions n..
  // Context shift: positions [p0, p1) of sequence s are removed and the
  // later ones move down by p1 - p0, their RoPE turned to their new
  // positions (Backend::mla_kv_shift); nothing is evaluated again.
  virtual void seq_drop(int64_t s, int64_t p0, int64_t p1) = 0;

  // ---- many sequences ------------------------------------------------------------
  virtual int64_t n_seq() const = 0;
  // Most tokens of one forward_spans() step, all spans together.
  virtual int64_t max_step_tokens() const = 0;
  virtual int64_t seq_pos(int64_t s) const = 0;          // cached positions of sequence s
  virtual void seq_truncate(int64_t s, int64_t n) = 0;   // forget its positions n..
  // Sequence dst becomes positions 0..n-1 of sequence src (n <= seq_pos(src)):
  // a prefix evaluated once, shared.
  virtual void seq_copy(int64_t src, int64_t dst, int64_t n) = 0;
  // One step over the spans' tokens (concatenated in `tokens`, span after
  // span, each sequence at most once, max_step_tokens() at most): every
  // token attends to its own sequence only, and the matrix products and
  // experts run over all of them together (each weight read once). With
  // several spans every product row is computed as it would be alone
  // (Backend::set_batch_invariant), so a sequence's logits do not depend on
  // its neighbours as long as its prompt chunks run as single spans; so is a
  // single span of several tokens with all_logits (a verify step). Writes
  // the logits of each span that wants them, in span order: one row, or n
  // rows for an all_logits span.
  virtual void forward_spans(const int32_t* tokens, const std::vector<SeqSpan>& spans, float* logits) = 0;

  // ---- multi-token prediction (speculative decoding) ----------------------------
  // The session drafts with the model's MTP module (DeepSeek-V3 §2.2).
  virtual bool has_mtp() const { return false; }
  // Up to n_draft greedy drafts of the tokens after `next`, the token chosen
  // after sequence s's last cached position and not evaluated yet: the
  // module takes (the trunk's hidden state there, next), then chains on its
  // own output. Writes drafts[0..k) and returns k: fewer near the end of the
  // context, 0 where the module cannot follow the sequence. The caller then
  // evaluates [next, drafts...] and truncates what it rejects; what the
  // module drafts never changes what the trunk computes.
  int64_t mtp_draft(int64_t s, int32_t next, int64_t n_draft, int32_t* drafts) {
    std::vector<DraftAsk> one{{s, next, n_draft, drafts, 0}};
    mtp_draft_many(one);
    return one[0].n_out;
  }
  // The same for many sequences in one pass of the module (each sequence's
  // drafts as if it drafted alone): sets every ask's n_out.
  virtual void mtp_draft_many(std::vector<DraftAsk>& asks) {
    for (DraftAsk& a : asks) a.n_out = 0;
  }

  // ---- saved caches (--prompt-cache, chat's /save and /load) --------------------
  // What a file must match to be loaded into this session (the model, the
  // cache's type and shape).
  virtual PromptCacheShape saved_cache_shape() const {
    throw_error("saved caches are not supported for this model yet");
  }
  // The cache of sequence 0's first n positions (n <= n_past()) into d.rows
  // or d.state. May evaluate those positions again where the cache no longer
  // holds what they need (the session then holds exactly them).
  virtual void saved_cache_export(int64_t n, PromptCacheData& d) {
    (void)n, (void)d;
    throw_error("saved caches are not supported for this model yet");
  }
  // Sequence 0 becomes the first n of d.tokens (n <= d.tokens.size()), from
  // d's cache; d is checked against saved_cache_shape() already. Throws for
  // a state this session cannot use.
  virtual void saved_cache_import(const PromptCacheData& d, int64_t n) {
    (void)n, (void)d;
    throw_error("saved caches are not supported for this model yet");
  }

 protected:
  // forward() for a model: the context checked, then steps of at most
  // n_batch tokens of sequence 0; step(tokens, span, out) evaluates one,
  // `out` where its logits go (nullptr when none are wanted).
  template <typename Step>
  void forward_in_steps(const int32_t* tokens, int64_t n, int64_t n_batch, float* logits, bool all_logits,
                        Step&& step) {
    if (n_past() + n > n_ctx())
      throw_error("context full: %lld tokens already in the cache, %lld more do not fit in the context of %lld",
                  static_cast<long long>(n_past()), static_cast<long long>(n), static_cast<long long>(n_ctx()));
    for (int64_t i = 0; i < n; i += n_batch) {
      const int64_t m = std::min(n_batch, n - i);
      const bool last = i + m == n;
      float* out = all_logits ? logits + i * n_vocab() : (last ? logits : nullptr);
      step(tokens + i, SeqSpan{0, m, all_logits || last, all_logits}, out);
    }
  }

  // forward_spans()'s checks: every sequence in range and at most once, no
  // empty span, each within the context, max_step_tokens() in all. Returns
  // the step's tokens.
  int64_t check_step_spans(const std::vector<SeqSpan>& spans) const {
    int64_t n = 0;
    std::vector<bool> seen(static_cast<size_t>(n_seq()), false);
    for (const SeqSpan& sp : spans) {
      if (sp.seq < 0 || sp.seq >= n_seq())
        throw_error("sequence %d is outside the %lld sequences of the session", sp.seq, static_cast<long long>(n_seq()));
      if (seen[static_cast<size_t>(sp.seq)]) throw_error("sequence %d appears twice in one step", sp.seq);
      seen[static_cast<size_t>(sp.seq)] = true;
      if (sp.n <= 0) throw_error("sequence %d: a span needs at least one token", sp.seq);
      if (seq_pos(sp.seq) + sp.n > n_ctx())
        throw_error("context full: sequence %d holds %lld tokens, %lld more do not fit in its context of %lld", sp.seq,
                    static_cast<long long>(seq_pos(sp.seq)), static_cast<long long>(sp.n),
                    static_cast<long long>(n_ctx()));
      n += sp.n;
    }
    if (n > max_step_tokens())
      throw_error("%lld tokens in one step; the session takes %lld", static_cast<long long>(n),
                  static_cast<long long>(max_step_tokens()));
    return n;
  }
};

}  // namespace moe
