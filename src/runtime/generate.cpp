#include "runtime/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace moe {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

const char* finish_reason_json(FinishReason r) {
  switch (r) {
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::eos: return "eos";
    case FinishReason::context_full: return "context";
    case FinishReason::interrupted: return "interrupted";
  }
  return "?";
}

const char* finish_reason_text(FinishReason r) {
  switch (r) {
    case FinishReason::stop: return "stop string";
    case FinishReason::length: return "length";
    case FinishReason::eos: return "eos";
    case FinishReason::context_full: return "context full";
    case FinishReason::interrupted: return "interrupted";
  }
  return "?";
}

Generation::Generation(const Tokenizer& tok, Sampler& sampler, const std::vector<int32_t>& prompt,
                       const GenerateOptions& opt, int64_t n_vocab, std::function<void(std::string_view)> on_text)
    : tok_(tok),
      sampler_(sampler),
      opt_(opt),
      on_text_(std::move(on_text)),
      // Generated text continues the prompt: no SentencePiece leading-space strip.
      decoder_(tok, /*special=*/false, /*at_start=*/false),
      stops_(opt.stop) {
  for (int32_t t : prompt) sampler_.accept(t);
  if (opt.ignore_eos)
    for (int32_t t = 0; t < static_cast<int32_t>(n_vocab); ++t)
      if (tok.is_eog(t)) eog_.push_back(t);
}

void Generation::emit(const std::string& piece) {
  const std::string out = stops_.push(piece);
  if (out.empty()) return;
  r_.text += out;
  on_text_(out);
}

int32_t Generation::next(float* logits, int64_t n_past, int64_t n_ctx, int32_t draft) {
  if (opt_.n_predict >= 0 && r_.n_generated >= opt_.n_predict) {
    r_.finish = FinishReason::length;
    return -1;
  }
  for (int32_t t : eog_) logits[static_cast<size_t>(t)] = -INFINITY;
  const int32_t next = draft >= 0 ? sampler_.sample_speculative(logits, draft) : sampler_.sample(logits);
  ++r_.n_generated;
  if (tok_.is_eog(next)) {
    r_.finish = FinishReason::eos;
    return -1;
  }
  emit(decoder_.push(next));
  if (stops_.stopped()) {
    r_.finish = FinishReason::stop;
    return -1;
  }
  if (n_past >= n_ctx) {
    r_.finish = FinishReason::context_full;
    return -1;
  }
  r_.generated.push_back(next);
  return next;
}

GenerateResult& Generation::finish() {
  if (!stops_.stopped()) {
    emit(decoder_.flush());
    if (!stops_.stopped()) {
      const std::string rest = stops_.flush();
      if (!rest.empty()) {
        r_.text += rest;
        on_text_(rest);
      }
    } else {
      r_.finish = FinishReason::stop;
    }
  }
  return r_;
}

GenerateResult generate(InferenceSession& session, const Tokenizer& tok, Sampler& sampler,
                        const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                        const std::function<void(std::string_view)>& on_text,
                        const std::function<bool()>& cancelled) {
  MOE_ASSERT(!prompt.empty(), "generate needs at least one new token to evaluate");
  const int64_t n_ctx = session.n_ctx();
  MOE_ASSERT(session.n_past() + static_cast<int64_t>(prompt.size()) <= n_ctx,
             "%zu prompt tokens do not fit after %lld cached tokens in a context of %lld", prompt.size(),
             static_cast<long long>(session.n_past()), static_cast<long long>(n_ctx));
  Generation gen(tok, sampler, prompt, opt, session.n_vocab(), on_text);
  GenerateResult& r = gen.result();
  std::vector<float> logits(static_cast<size_t>(session.n_vocab()));

  const auto t_prompt = Clock::now();
  const int64_t chunk = std::max<int64_t>(1, opt.prompt_chunk);
  for (size_t done = 0; done < prompt.size();) {
    if (cancelled()) {
      r.finish = FinishReason::interrupted;
      r.prompt_s = seconds_since(t_prompt);
      return r;
    }
    const int64_t n = std::min<int64_t>(chunk, static_cast<int64_t>(prompt.size() - done));
    session.forward(prompt.data() + done, n, logits.data(), false);
    done += static_cast<size_t>(n);
    r.n_prompt += n;
  }
  r.prompt_complete = true;
  r.prompt_s = seconds_since(t_prompt);

  const auto t_gen = Clock::now();
  const bool shift = opt.shift_keep >= 0;
  const int64_t limit = shift ? INT64_MAX : n_ctx;
  const int64_t n_spec = session.has_mtp() ? std::max<int64_t>(0, opt.spec_draft_n) : 0;
  const int64_t V = session.n_vocab();
  std::vector<int32_t> step(static_cast<size_t>(n_spec + 1));
  std::vector<float> rows(n_spec > 0 ? static_cast<size_t>((n_spec + 1) * V) : 0);
  // next: a token Generation returned (in r.generated) that the cache does
  // not hold yet; -1: the logits are the next position's, to sample from.
  int32_t next = -1;
  for (;;) {
    if (cancelled()) {
      if (next >= 0) session.forward(&next, 1, logits.data(), false);  // it counts as generated
      gen.interrupt();
      break;
    }
    if (next < 0) {
      next = gen.next(logits.data(), session.n_past(), limit);
      if (next < 0) break;
    }
    if (shift && session.n_past() >= n_ctx) {
      const int64_t keep = std::min(opt.shift_keep, n_ctx - 2), n_discard = (session.n_past() - keep) / 2;
      session.seq_drop(0, keep, keep + n_discard);
    }
    // Drafts past the token budget would be verified for nothing.
    const int64_t budget = opt.n_predict >= 0 ? opt.n_predict - r.n_generated - 1 : n_spec;
    const int64_t n_draft = std::min(n_spec, budget);
    const int64_t k = n_draft > 0 ? session.mtp_draft(0, next, n_draft, step.data() + 1) : 0;
    if (k == 0) {
      session.forward(&next, 1, logits.data(), false);
      next = -1;
      continue;
    }
    // Speculative decoding: evaluate [next, drafts] in one pass; row j's
    // logits choose the token after it, and draft j stays while it is that
    // token. The first one that differs (or the token after the last draft)
    // is the next step's; the cache drops the rejected drafts.
    step[0] = next;
    const int64_t p = session.n_past();
    session.forward_verify(step.data(), k + 1, rows.data());
    r.n_drafted += k;
    ++r.n_verify_steps;
    int64_t j = 0;
    for (;; ++j) {
      float* row = rows.data() + j * V;
      next = gen.next(row, p + 1 + j, limit, j < k ? step[static_cast<size_t>(j + 1)] : -1);
      if (next < 0 || j == k || next != step[static_cast<size_t>(j + 1)]) break;
      ++r.n_accepted;
    }
    session.truncate(p + 1 + j);  // next, and the drafts kept
    if (next < 0) break;
  }
  gen.finish();
  r.gen_s = seconds_since(t_gen);
  return r;
}

}  // namespace moe
