// The one generation loop (the one-shot, chat and batch modes of `moe`):
// evaluate the new prompt tokens on top of what the session already holds,
// then sample, stream complete UTF-8 text, and stop on an end-of-generation
// token, the token budget, a stop string, a full context or a cancel request.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/inference_session.h"
#include "runtime/sampler.h"
#include "runtime/stop_matcher.h"
#include "tokenizer/tokenizer.h"

namespace moe {

enum class FinishReason { stop, length, eos, context_full, interrupted };
// "stop", "length", "eos", "context", "interrupted".
const char* finish_reason_json(FinishReason r);
// For timing lines: "stop string", "length", "eos", "context full", "interrupted".
const char* finish_reason_text(FinishReason r);

struct GenerateOptions {
  int64_t n_predict = -1;          // sampled tokens at most (EOS included); negative: no limit
  std::vector<std::string> stop;   // stop strings (not part of the returned text)
  int64_t prompt_chunk = 512;      // prompt tokens per forward() between cancel checks
  bool ignore_eos = false;         // end-of-generation tokens are never sampled
  // --context-shift: when the context is full, positions [0, shift_keep)
  // stay and half of the rest is dropped (InferenceSession::seq_drop,
  // llama.cpp's rule), and generation goes on; -1: it stops there.
  int64_t shift_keep = -1;
  // --spec-type draft-mtp --spec-draft-n-max N: speculative decoding with
  // the model's MTP module, N drafts per step (0: off; the session must have
  // the module). The output is what it would be without drafts: greedy the
  // same tokens, sampled the same distribution.
  int64_t spec_draft_n = 0;
};

struct GenerateResult {
  std::string text;                // the answer, without any stop string
  FinishReason finish = FinishReason::length;
  int64_t n_prompt = 0;            // prompt tokens evaluated by this call
  int64_t n_prompt_copied = 0;     // of them, copied from another sequence's cache instead
  int64_t n_generated = 0;         // tokens sampled (EOS included)
  double prompt_s = 0, gen_s = 0;
  std::vector<int32_t> generated;  // sampled tokens that went into the cache (no EOS)
  bool prompt_complete = false;    // false when cancelled before the whole prompt was evaluated
  int64_t n_drafted = 0;           // speculative decoding: tokens the MTP module drafted
  int64_t n_accepted = 0;          // and of them, the ones the model kept
  int64_t n_verify_steps = 0;      // forward passes that checked drafts
};

// The sampling side of one answer, step by step, for a caller that runs the
// forward passes itself (generate() below, or the batch scheduler stepping
// many sequences at once): given the logits after the last evaluated token,
// next() samples and says which token to evaluate next, or that the answer
// is finished (length, end of generation, stop string, full context).
class Generation {
 public:
  // The prompt's tokens go into the sampler's penalty history.
  // n_vocab: the model's logits per token.
  Generation(const Tokenizer& tok, Sampler& sampler, const std::vector<int32_t>& prompt, const GenerateOptions& opt,
             int64_t n_vocab, std::function<void(std::string_view)> on_text);
  // n_past, n_ctx: the sequence's cached tokens and context. Returns the
  // token to evaluate next (it joins result().generated), or -1 when done.
  // draft >= 0: a drafted token for this position (Sampler::sample_speculative).
  int32_t next(float* logits, int64_t n_past, int64_t n_ctx, int32_t draft = -1);
  // Ends the answer early (Ctrl-C).
  void interrupt() { r_.finish = FinishReason::interrupted; }
  // Flushes the held-back text; the result is complete after this.
  GenerateResult& finish();
  GenerateResult& result() { return r_; }

 private:
  void emit(const std::string& piece);
  const Tokenizer& tok_;
  Sampler& sampler_;
  const GenerateOptions& opt_;
  std::function<void(std::string_view)> on_text_;
  StreamDecoder decoder_;
  StopMatcher stops_;
  std::vector<int32_t> eog_;  // --ignore-eos: end-of-generation tokens get no probability
  GenerateResult r_;
};

// Appends `prompt` (non-empty) to the session at n_past() and generates.
// on_text receives the answer in order as it becomes final (complete UTF-8,
// never a possible stop-string prefix); cancelled() is polled between
// forward() calls. Tokens are added to the sampler's penalty history.
GenerateResult generate(InferenceSession& session, const Tokenizer& tok, Sampler& sampler,
                        const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                        const std::function<void(std::string_view)>& on_text,
                        const std::function<bool()>& cancelled);

}  // namespace moe
