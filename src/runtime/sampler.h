// Token sampler: turns one row of logits into the next token id.
//
// The chain is llama.cpp's default (common/common.h, common_params_sampling::samplers,
// built in common/sampling.cpp common_sampler_init), minus the samplers that are off
// by default there (DRY, top-n-sigma, typical-p, XTC):
//
//   penalties -> top-k -> top-p -> min-p -> temperature -> draw
//
//   penalties : for each token seen in the last repeat_last_n accepted tokens, count c:
//               logit = logit > 0 ? logit / repeat_penalty : logit * repeat_penalty
//               logit -= c * frequency_penalty + presence_penalty
//               (llama-sampler.cpp, llama_sampler_penalties_apply)
//   top-k     : keep the top_k largest logits                    (top_k <= 0: off)
//   top-p     : keep the smallest best-first prefix whose softmax mass (at temperature 1,
//               over the survivors of top-k) reaches top_p       (top_p >= 1: off)
//   min-p     : keep logits >= max + log(min_p), i.e. p >= min_p * p_max (min_p <= 0: off)
//   temp      : divide the survivors' logits by temp, softmax, draw one with the RNG.
//
// Temperature comes after the truncations, as in llama.cpp, so top-p and min-p
// always see the temperature-1 distribution. temp <= 0 is greedy: the argmax of
// the penalized logits (ties go to the lowest id); the RNG is not touched.
//
// Non-finite logits: NaN and -inf are never drawn; +inf counts as the largest
// finite float (several +inf tokens share the mass equally). When every logit
// is NaN or -inf, token 0 is returned.
//
// Nothing is allocated per call: the candidate buffer (n_vocab entries), the
// penalty window (repeat_last_n entries) and the per-token counts (n_vocab) are
// all allocated in the constructor.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace moe {

// SamplerParams::seed value that asks for a fresh random seed; Sampler::seed()
// reports the one drawn so the run can be reproduced.
inline constexpr uint64_t kRandomSeed = 0xFFFFFFFFFFFFFFFFull;

// Defaults are llama.cpp's (common_params_sampling).
struct SamplerParams {
  float temp = 0.8f;               // <= 0: greedy
  int32_t top_k = 40;              // <= 0: off
  float top_p = 0.95f;             // in [0, 1]; 1: off
  float min_p = 0.05f;             // <= 1; <= 0: off
  float repeat_penalty = 1.0f;     // > 0; 1: off
  int32_t repeat_last_n = 64;      // >= 0; window of accepted tokens penalized; 0: no penalties
  float frequency_penalty = 0.0f;  // subtracted once per occurrence in the window
  float presence_penalty = 0.0f;   // subtracted once if present in the window
  uint64_t seed = kRandomSeed;     // kRandomSeed: draw one from std::random_device
};

// Throws moe::Error naming the first invalid field.
void sampler_params_validate(const SamplerParams& p, int32_t n_vocab);

class Sampler {
 public:
  // Largest accepted repeat_last_n (the window is preallocated).
  static constexpr int32_t kMaxRepeatLastN = 1 << 24;

  Sampler(const SamplerParams& p, int32_t n_vocab);

  // logits: [n_vocab]. Runs the chain, records the chosen token in the penalty
  // history (do not accept() it again) and returns it.
  int32_t sample(const float* logits);

  // The same distribution as sample(), given a draft token that a draft
  // model proposed for this position (speculative decoding): the draft comes
  // back with probability p(draft), and otherwise a token drawn from p
  // without it, so the output is distributed exactly as sample()'s (the RNG
  // stream differs). Greedy: the argmax, as sample().
  int32_t sample_speculative(const float* logits, int32_t draft);

  // Records a token the model saw without sampling it (prompt tokens, forced
  // tokens) so that penalties apply to it. Throws on an id outside [0, n_vocab).
  void accept(int32_t token);

  // Returns to the just-constructed state: the history is cleared and the RNG
  // is re-seeded from seed(), so the draws that follow repeat those of a fresh
  // Sampler with the same seed. (A random seed is not redrawn.)
  void reset();

  uint64_t seed() const { return seed_; }  // the seed actually used, never kRandomSeed
  const SamplerParams& params() const { return params_; }
  int32_t n_vocab() const { return n_vocab_; }

 private:
  struct Candidate {
    int32_t id;
    float logit;
    float weight;  // scratch: unnormalized probability
  };

  void seed_rng();
  double uniform01();  // [0, 1), 53 bits from the mt19937 stream, identical on every platform
  size_t load_candidates(const float* logits);  // penalties + drop NaN/-inf; returns the count
  int32_t pick_greedy(size_t n) const;
  size_t truncate_top_k(size_t n);
  size_t truncate_top_p(size_t n);
  size_t truncate_min_p(size_t n);
  int32_t draw(size_t n);
  int32_t draw_given_draft(size_t n, int32_t draft);
  int32_t sample_given(const float* logits, int32_t draft);  // draft < 0: none

  SamplerParams params_;
  int32_t n_vocab_;
  uint64_t seed_;
  std::mt19937 rng_;

  std::vector<Candidate> cand_;  // [n_vocab]
  bool sorted_ = false;          // cand_[0, n) is best-first

  // Penalty window: the last repeat_last_n accepted tokens as a ring, and how
  // often each token occurs in it.
  std::vector<int32_t> ring_;    // [repeat_last_n]
  size_t ring_head_ = 0;         // next slot to write
  size_t ring_size_ = 0;
  std::vector<int32_t> counts_;  // [n_vocab]
};

}  // namespace moe
