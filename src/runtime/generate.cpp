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

GenerateResult generate(InferenceSession& session, const Tokenizer& tok, Sampler& sampler,
                        const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                        const std::function<void(std::string_view)>& on_text,
                        const std::function<bool()>& cancelled) {
  MOE_ASSERT(!prompt.empty(), "generate needs at least one new token to evaluate");
  const int64_t n_ctx = session.n_ctx();
  MOE_ASSERT(session.n_past() + static_cast<int64_t>(prompt.size()) <= n_ctx,
             "%zu prompt tokens do not fit after %lld cached tokens in a context of %lld", prompt.size(),
             static_cast<long long>(session.n_past()), static_cast<long long>(n_ctx));
  GenerateResult r;
  std::vector<float> logits(static_cast<size_t>(session.n_vocab()));
  for (int32_t t : prompt) sampler.accept(t);

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

  // Generated text continues the prompt: no SentencePiece leading-space strip.
  StreamDecoder decoder(tok, /*special=*/false, /*at_start=*/false);
  StopMatcher stops(opt.stop);
  auto emit = [&](const std::string& piece) {
    const std::string out = stops.push(piece);
    if (out.empty()) return;
    r.text += out;
    on_text(out);
  };
  // --ignore-eos: the end-of-generation tokens get no probability.
  std::vector<int32_t> eog;
  if (opt.ignore_eos)
    for (int32_t t = 0; t < static_cast<int32_t>(logits.size()); ++t)
      if (tok.is_eog(t)) eog.push_back(t);
  const auto t_gen = Clock::now();
  for (;;) {
    if (opt.n_predict >= 0 && r.n_generated >= opt.n_predict) {
      r.finish = FinishReason::length;
      break;
    }
    if (cancelled()) {
      r.finish = FinishReason::interrupted;
      break;
    }
    for (int32_t t : eog) logits[static_cast<size_t>(t)] = -INFINITY;
    const int32_t next = sampler.sample(logits.data());
    ++r.n_generated;
    if (tok.is_eog(next)) {
      r.finish = FinishReason::eos;
      break;
    }
    emit(decoder.push(next));
    if (stops.stopped()) {
      r.finish = FinishReason::stop;
      break;
    }
    if (session.n_past() >= n_ctx) {
      r.finish = FinishReason::context_full;
      break;
    }
    session.forward(&next, 1, logits.data(), false);
    r.generated.push_back(next);
  }
  if (!stops.stopped()) {
    emit(decoder.flush());
    if (!stops.stopped()) {
      const std::string rest = stops.flush();
      if (!rest.empty()) {
        r.text += rest;
        on_text(rest);
      }
    } else {
      r.finish = FinishReason::stop;
    }
  }
  r.gen_s = seconds_since(t_gen);
  return r;
}

}  // namespace moe
