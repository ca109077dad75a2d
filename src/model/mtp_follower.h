// How a model's multi-token-prediction module follows its trunk and drafts
// (DeepSeek-V3 §2.2; vLLM's and SGLang's use of it for speculative
// decoding), for any session: deepseek2_mtp.cpp (V3's module, in the model
// file) and deepseek4_mtp.cpp (V4's, from a companion file) supply the
// module's arithmetic through MtpModule, this class the bookkeeping.
//
// The module's position i pairs the trunk's final hidden state h_i with the
// token at i+1 and predicts the token at i+2. It follows the trunk lazily:
// a trunk step records its hidden states (record()); the next step
// (catch_up()) or a draft (draft_many()) sends every pair whose next token
// is known through the module in one batch before they are overwritten.
// Its rows only ever come from accepted tokens, so a rejected draft needs
// no rollback there; chained drafts (n_draft > 1, the block fed its own
// output, as vLLM chains it) use rows past the trunk that are dropped at
// once. Where the hidden states of some positions are gone (a loaded saved
// cache, a truncation older than the last step) the module skips them and
// those rows of its cache stay as they were: drafts there are worse, what
// the trunk computes is unchanged.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "runtime/backend.h"
#include "runtime/inference_session.h"

namespace moe {

// n pairs of sequence seq from module position pos0, in rows r0.. of a batch.
struct MtpSpan {
  int32_t seq;
  int64_t pos0, n, r0;
};

// The module's arithmetic, as the session computes it.
class MtpModule {
 public:
  virtual ~MtpModule() = default;
  virtual int64_t mtp_seq_pos(int64_t s) const = 0;  // the trunk's cached positions of sequence s
  // Hidden state h (one row of the trunk's width) becomes pair `row`'s of the next batch.
  virtual void mtp_stage_hidden(const Act& h, int64_t row) = 0;
  // The block over n staged pairs whose next tokens are given; its output
  // rows stay for mtp_head().
  virtual void mtp_block(const int32_t* next_tokens, const std::vector<MtpSpan>& at, int64_t n) = 0;
  // The head's logits over the block's output rows x_rows[i], [i][n_vocab];
  // those rows are kept as chain rows i (what a chained draft continues from).
  virtual const float* mtp_head(const std::vector<int64_t>& x_rows) = 0;
  virtual Act mtp_chain_row(int64_t i) const = 0;
  // Every product row as it would be alone (drafts of many sequences at once).
  virtual void mtp_set_batch_invariant(bool on) = 0;
};

class MtpFollower {
 public:
  // hid: [n_rows][width] the trunk's last step's hidden states (the session
  // writes them, then calls record()); pending: [n_seq][width].
  MtpFollower(MtpModule& module, Backend& be, Act hid, Act pending, int64_t n_seq, int64_t n_ctx, int64_t n_rows,
              int64_t n_vocab);

  // After a trunk step: its rows' tokens, and where they went (r0: their rows of hid).
  void record(const int32_t* tokens, const std::vector<MtpSpan>& at, int64_t n);
  // Before a trunk step overwrites them: every pair whose next token is
  // known (the last step's tokens, then seq_first_next's first token of
  // this step) goes through the module.
  void catch_up(const std::vector<std::pair<int32_t, int32_t>>& seq_first_next);
  // InferenceSession::mtp_draft_many.
  void draft_many(std::vector<DraftAsk>& asks);

  // The trunk's hidden state of sequence s at position q (a row of hid or
  // pending), or a null buffer where it is gone.
  Act hidden_at(int64_t s, int64_t q) const;

  // Sequence operations (the trunk's are done; the module's cache is the session's).
  void truncate(int64_t s, int64_t n);
  // dst becomes src's first n positions. Returns the module rows of src the
  // session must copy to dst (rows [0, returned)).
  int64_t copy(int64_t src, int64_t dst, int64_t n);
  // Positions [p0, p1) of s are gone and the later ones moved down. Returns
  // the module rows [p1, end) the session must move down to p0 (end <= p1: none).
  int64_t drop(int64_t s, int64_t p0, int64_t p1);
  void reset(int64_t s);  // s < 0: every sequence

 private:
  int32_t token_at(int64_t s, int64_t q) const;
  // The pairs of sequence s from its module position on whose hidden state
  // and next token are known (next_at_end: the token after the last cached
  // position, or -1), appended to at and tokens, staged from row `row`.
  int64_t gather(int32_t s, int32_t next_at_end, std::vector<MtpSpan>& at, std::vector<int32_t>& tokens, int64_t row);

  MtpModule& m_;
  Backend& be_;
  Act hid_, pending_;
  int64_t n_ctx_, n_rows_, n_vocab_;
  std::vector<int64_t> pos_;          // [sequence] pairs the module has seen
  std::vector<int64_t> pending_pos_;  // [sequence] the position pending_ holds, -1: none
  std::vector<int32_t> last_tokens_;  // the last step's tokens
  std::vector<MtpSpan> last_spans_;   // and spans (seq -1: positions gone)
};

}  // namespace moe
