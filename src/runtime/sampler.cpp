#include "runtime/sampler.h"

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace moe {

namespace {

// Best first: larger logit, then lower id, so every truncation is deterministic.
struct BetterCandidate {
  template <class C>
  bool operator()(const C& a, const C& b) const {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  }
};

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A fresh seed from std::random_device, mixed with the clock in case the
// device is a deterministic fallback (llama.cpp's get_rng_seed guards the same way).
uint64_t draw_random_seed() {
  uint64_t s = 0;
  try {
    std::random_device rd;
    s = (static_cast<uint64_t>(rd()) << 32) | static_cast<uint64_t>(rd());
  } catch (const std::exception&) {
    // no entropy source: the clock alone
  }
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  s ^= splitmix64(static_cast<uint64_t>(now));
  return s == kRandomSeed ? 0 : s;
}

}  // namespace

void sampler_params_validate(const SamplerParams& p, int32_t n_vocab) {
  MOE_ASSERT(n_vocab > 0, "sampler: n_vocab must be > 0, got %d", n_vocab);
  MOE_ASSERT(std::isfinite(p.temp), "sampler: temp must be finite (<= 0 means greedy), got %g",
             static_cast<double>(p.temp));
  MOE_ASSERT(p.top_p >= 0.0f && p.top_p <= 1.0f,
             "sampler: top_p must be in [0, 1] (1 = off), got %g", static_cast<double>(p.top_p));
  MOE_ASSERT(!std::isnan(p.min_p) && p.min_p <= 1.0f,
             "sampler: min_p must be <= 1 (<= 0 = off), got %g", static_cast<double>(p.min_p));
  MOE_ASSERT(std::isfinite(p.repeat_penalty) && p.repeat_penalty > 0.0f,
             "sampler: repeat_penalty must be finite and > 0 (1 = off), got %g",
             static_cast<double>(p.repeat_penalty));
  MOE_ASSERT(p.repeat_last_n >= 0 && p.repeat_last_n <= Sampler::kMaxRepeatLastN,
             "sampler: repeat_last_n must be in [0, %d] (0 = no penalties), got %d",
             Sampler::kMaxRepeatLastN, p.repeat_last_n);
  MOE_ASSERT(std::isfinite(p.frequency_penalty), "sampler: frequency_penalty must be finite, got %g",
             static_cast<double>(p.frequency_penalty));
  MOE_ASSERT(std::isfinite(p.presence_penalty), "sampler: presence_penalty must be finite, got %g",
             static_cast<double>(p.presence_penalty));
}

Sampler::Sampler(const SamplerParams& p, int32_t n_vocab) : params_(p), n_vocab_(n_vocab) {
  sampler_params_validate(p, n_vocab);
  seed_ = p.seed == kRandomSeed ? draw_random_seed() : p.seed;
  cand_.resize(static_cast<size_t>(n_vocab));
  ring_.resize(static_cast<size_t>(p.repeat_last_n));
  counts_.assign(static_cast<size_t>(n_vocab), 0);
  seed_rng();
}

void Sampler::seed_rng() {
  // Both halves of the 64-bit seed reach the state (mt19937's own seed() keeps 32 bits).
  std::seed_seq seq{static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32)};
  rng_.seed(seq);
}

void Sampler::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  ring_head_ = 0;
  ring_size_ = 0;
  seed_rng();
}

double Sampler::uniform01() {
  // MT19937's genrand_res53: 27 + 26 bits. std::uniform_real_distribution is not
  // specified bit-for-bit, this is, so a seed reproduces a run on any platform.
  const uint64_t a = static_cast<uint64_t>(rng_()) >> 5;
  const uint64_t b = static_cast<uint64_t>(rng_()) >> 6;
  return (static_cast<double>(a) * 67108864.0 + static_cast<double>(b)) * (1.0 / 9007199254740992.0);
}

void Sampler::accept(int32_t token) {
  MOE_ASSERT(token >= 0 && token < n_vocab_, "sampler: accepted token id %d is outside [0, %d)", token,
             n_vocab_);
  const size_t cap = ring_.size();
  if (cap == 0) return;
  if (ring_size_ == cap) {
    --counts_[static_cast<size_t>(ring_[ring_head_])];  // the oldest token leaves the window
  } else {
    ++ring_size_;
  }
  ring_[ring_head_] = token;
  ++counts_[static_cast<size_t>(token)];
  ring_head_ = (ring_head_ + 1) % cap;
}

size_t Sampler::load_candidates(const float* logits) {
  const SamplerParams& p = params_;
  const bool penalize = ring_size_ > 0 && !(p.repeat_penalty == 1.0f && p.frequency_penalty == 0.0f &&
                                            p.presence_penalty == 0.0f);
  size_t n = 0;
  for (int32_t i = 0; i < n_vocab_; ++i) {
    float l = logits[i];
    if (penalize) {
      const int32_t c = counts_[static_cast<size_t>(i)];
      if (c > 0) {
        // Dividing a negative logit would raise it, so those are multiplied instead
        // (llama_sampler_penalties_apply).
        l = l > 0.0f ? l / p.repeat_penalty : l * p.repeat_penalty;
        l -= static_cast<float>(c) * p.frequency_penalty + p.presence_penalty;
      }
    }
    if (!(l > -INFINITY)) continue;  // NaN or -inf: never drawn
    if (l > FLT_MAX) l = FLT_MAX;    // +inf: the largest logit there is
    cand_[n++] = Candidate{i, l, 0.0f};
  }
  sorted_ = false;
  return n;
}

int32_t Sampler::pick_greedy(size_t n) const {
  size_t best = 0;
  float best_l = cand_[0].logit;  // in a register: no load in the loop-carried chain
  for (size_t i = 1; i < n; ++i) {
    if (cand_[i].logit > best_l) {  // strict: ties keep the lower id
      best = i;
      best_l = cand_[i].logit;
    }
  }
  return cand_[best].id;
}

size_t Sampler::truncate_top_k(size_t n) {
  const int32_t k = params_.top_k;
  if (k <= 0 || static_cast<size_t>(k) >= n) return n;
  std::partial_sort(cand_.begin(), cand_.begin() + k, cand_.begin() + static_cast<ptrdiff_t>(n),
                    BetterCandidate{});
  sorted_ = true;
  return static_cast<size_t>(k);
}

size_t Sampler::truncate_top_p(size_t n) {
  const float top_p = params_.top_p;
  if (top_p >= 1.0f || n <= 1) return n;

  // Softmax at temperature 1 over the current survivors.
  float max_l = cand_[0].logit;
  for (size_t i = 1; i < n; ++i) max_l = std::max(max_l, cand_[i].logit);
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    cand_[i].weight = std::exp(cand_[i].logit - max_l);
    sum += cand_[i].weight;
  }

  // Sort lazily: the nucleus is usually small, so sort the best 256 first and
  // the rest only if the nucleus reaches past them (llama.cpp does the same).
  auto first = cand_.begin();
  auto last = first + static_cast<ptrdiff_t>(n);
  size_t n_sorted = n;
  if (!sorted_) {
    n_sorted = n > 1024 ? 256 : n;
    std::partial_sort(first, first + static_cast<ptrdiff_t>(n_sorted), last, BetterCandidate{});
  }
  sorted_ = true;

  const double target = static_cast<double>(top_p);
  double cum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (i == n_sorted) {  // the nucleus is wider than the sorted head: sort the tail too
      std::sort(first + static_cast<ptrdiff_t>(n_sorted), last, BetterCandidate{});
      n_sorted = n;
    }
    cum += cand_[i].weight / sum;
    if (cum >= target) return i + 1;
  }
  if (n_sorted < n) std::sort(first + static_cast<ptrdiff_t>(n_sorted), last, BetterCandidate{});
  return n;  // rounding kept the sum just under top_p
}

size_t Sampler::truncate_min_p(size_t n) {
  const float min_p = params_.min_p;
  if (min_p <= 0.0f || n <= 1) return n;
  float max_l = cand_[0].logit;
  if (!sorted_) {
    for (size_t i = 1; i < n; ++i) max_l = std::max(max_l, cand_[i].logit);
  }
  // p_i >= min_p * p_max  <=>  logit_i >= max + log(min_p)  (temperature 1)
  const float min_l = max_l + std::log(min_p);
  size_t kept = 0;
  for (size_t i = 0; i < n; ++i) {
    if (cand_[i].logit >= min_l) cand_[kept++] = cand_[i];  // order (and sortedness) is kept
  }
  return kept;
}

int32_t Sampler::draw(size_t n) {
  // One uniform per draw however many candidates survive, so the RNG stream
  // advances the same way whatever the truncations keep.
  const double u = uniform01();
  float max_l = cand_[0].logit;
  for (size_t i = 1; i < n; ++i) max_l = std::max(max_l, cand_[i].logit);
  const float inv_temp = 1.0f / params_.temp;
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    // (l - max) / temp rather than l / temp - max / temp: no overflow at +-FLT_MAX.
    cand_[i].weight = std::exp((cand_[i].logit - max_l) * inv_temp);
    sum += cand_[i].weight;
  }
  const double target = u * sum;
  double cum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    cum += cand_[i].weight;
    if (cum > target) return cand_[i].id;  // strict: a zero-weight token is never chosen
  }
  // Unreachable in exact arithmetic; the max has weight 1, so fall back to it.
  for (size_t i = 0; i < n; ++i) {
    if (cand_[i].logit == max_l) return cand_[i].id;
  }
  return cand_[0].id;
}

int32_t Sampler::draw_given_draft(size_t n, int32_t draft) {
  // Speculative sampling (Leviathan et al. 2023; Chen et al. 2023) with a
  // draft that is one token for sure (q = 1 at the draft): keep it with
  // probability p(draft), else draw from p without it. Every token x then
  // comes out with probability p(x) exactly: the draft p(d), any other
  // (1 - p(d)) p(x) / (1 - p(d)).
  float max_l = cand_[0].logit;
  for (size_t i = 1; i < n; ++i) max_l = std::max(max_l, cand_[i].logit);
  const float inv_temp = 1.0f / params_.temp;
  double sum = 0.0, w_draft = 0.0;
  for (size_t i = 0; i < n; ++i) {
    cand_[i].weight = std::exp((cand_[i].logit - max_l) * inv_temp);
    sum += cand_[i].weight;
    if (cand_[i].id == draft) w_draft = cand_[i].weight;
  }
  if (uniform01() * sum < w_draft) return draft;
  const double target = uniform01() * (sum - w_draft);
  double cum = 0.0;
  int32_t last = -1;
  for (size_t i = 0; i < n; ++i) {
    if (cand_[i].id == draft || cand_[i].weight <= 0.0f) continue;
    cum += cand_[i].weight;
    last = cand_[i].id;
    if (cum > target) return cand_[i].id;
  }
  return last >= 0 ? last : draft;  // rounding at the very end of the sum
}

int32_t Sampler::sample_speculative(const float* logits, int32_t draft) {
  MOE_ASSERT(logits != nullptr, "sampler: sample_speculative() got null logits");
  return sample_given(logits, draft);
}

int32_t Sampler::sample(const float* logits) {
  MOE_ASSERT(logits != nullptr, "sampler: sample() got null logits");
  return sample_given(logits, -1);
}

int32_t Sampler::sample_given(const float* logits, int32_t draft) {
  size_t n = load_candidates(logits);
  int32_t token = 0;  // every logit NaN or -inf: the first token
  if (n > 0) {
    if (params_.temp <= 0.0f) {
      // top-k, top-p and min-p all keep the max, so greedy skips them.
      token = pick_greedy(n);
    } else {
      n = truncate_top_k(n);
      n = truncate_top_p(n);
      n = truncate_min_p(n);
      token = draft >= 0 ? draw_given_draft(n, draft) : draw(n);
    }
  }
  accept(token);
  return token;
}

}  // namespace moe
