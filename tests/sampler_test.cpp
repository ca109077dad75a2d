// Sampler: the llama.cpp chain penalties -> top-k -> top-p -> min-p -> temp -> draw.
#include "runtime/sampler.h"

#include <doctest/doctest.h>

#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"

namespace {

using moe::Sampler;
using moe::SamplerParams;

// Only temperature left: the draw must follow softmax(logits / temp) exactly.
SamplerParams untruncated(float temp, uint64_t seed = 1234) {
  SamplerParams p;
  p.temp = temp;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = seed;
  return p;
}

SamplerParams greedy() {
  SamplerParams p;
  p.temp = 0.0f;
  return p;
}

std::vector<float> logits_of_probs(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

std::vector<double> softmax(const std::vector<float>& logits, double temp) {
  double mx = -INFINITY;
  for (float l : logits) mx = std::max(mx, static_cast<double>(l));
  std::vector<double> p;
  double sum = 0.0;
  for (float l : logits) {
    p.push_back(std::exp((l - mx) / temp));
    sum += p.back();
  }
  for (double& x : p) x /= sum;
  return p;
}

std::vector<int> histogram(Sampler& s, const std::vector<float>& logits, int draws) {
  std::vector<int> h(logits.size(), 0);
  bool in_range = true;
  for (int i = 0; i < draws; ++i) {
    const int32_t t = s.sample(logits.data());
    in_range = in_range && t >= 0 && t < static_cast<int32_t>(logits.size());
    if (in_range) ++h[static_cast<size_t>(t)];
  }
  REQUIRE(in_range);
  return h;
}

double entropy_of(const std::vector<int>& h) {
  double n = 0.0, e = 0.0;
  for (int c : h) n += c;
  for (int c : h) {
    if (c > 0) e -= (c / n) * std::log(c / n);
  }
  return e;
}

// A few fixed pseudo-random logits (no RNG in the test itself).
std::vector<float> wavy_logits(int n, int salt) {
  std::vector<float> l(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) l[static_cast<size_t>(i)] = 3.0f * std::sin(0.37f * i * (salt + 1) + salt);
  return l;
}

}  // namespace

TEST_CASE("sampler: defaults are llama.cpp's") {
  const SamplerParams p;
  CHECK(p.temp == doctest::Approx(0.8));
  CHECK(p.top_k == 40);
  CHECK(p.top_p == doctest::Approx(0.95));
  CHECK(p.min_p == doctest::Approx(0.05));
  CHECK(p.repeat_penalty == 1.0f);
  CHECK(p.repeat_last_n == 64);
  CHECK(p.frequency_penalty == 0.0f);
  CHECK(p.presence_penalty == 0.0f);
  CHECK(p.seed == moe::kRandomSeed);
}

TEST_CASE("sampler: greedy picks the argmax, ties go to the lowest id") {
  Sampler s(greedy(), 6);
  const float a[6] = {0.1f, -2.0f, 3.5f, 3.4f, -7.0f, 1.0f};
  CHECK(s.sample(a) == 2);
  const float tie[6] = {1.0f, 4.0f, 2.0f, 4.0f, 4.0f, 0.0f};
  CHECK(s.sample(tie) == 1);

  SamplerParams neg = greedy();
  neg.temp = -1.0f;  // negative temperature is greedy too
  Sampler sn(neg, 6);
  CHECK(sn.sample(a) == 2);
  CHECK(sn.sample(tie) == 1);
}

TEST_CASE("sampler: temp 0 ignores the seed") {
  SamplerParams p1 = greedy(), p2 = greedy();
  p1.seed = 1;
  p2.seed = 987654321;
  Sampler s1(p1, 40), s2(p2, 40);
  for (int row = 0; row < 50; ++row) {
    const std::vector<float> l = wavy_logits(40, row);
    CHECK(s1.sample(l.data()) == s2.sample(l.data()));
  }
}

TEST_CASE("sampler: a seed reproduces the sequence, different seeds differ") {
  const std::vector<float> l(64, 0.0f);  // uniform over 64 tokens
  auto run = [&](uint64_t seed) {
    Sampler s(untruncated(1.0f, seed), 64);
    CHECK(s.seed() == seed);
    std::vector<int32_t> out;
    for (int i = 0; i < 500; ++i) out.push_back(s.sample(l.data()));
    return out;
  };
  CHECK(run(42) == run(42));
  CHECK(run(42) != run(43));
  // The high half of the 64-bit seed matters too.
  CHECK(run(7) != run(7 + (uint64_t{1} << 32)));

  // reset() re-seeds: the draws after it repeat those of a fresh sampler.
  Sampler s(untruncated(1.0f, 42), 64);
  std::vector<int32_t> first, again;
  for (int i = 0; i < 500; ++i) first.push_back(s.sample(l.data()));
  s.reset();
  for (int i = 0; i < 500; ++i) again.push_back(s.sample(l.data()));
  CHECK(first == again);
  CHECK(first == run(42));
}

TEST_CASE("sampler: a random seed is drawn and reported") {
  SamplerParams p = untruncated(1.0f, moe::kRandomSeed);
  Sampler a(p, 64), b(p, 64);
  CHECK(a.seed() != moe::kRandomSeed);
  CHECK(a.seed() != b.seed());
  CHECK(a.params().seed == moe::kRandomSeed);

  // Reporting the seed is enough to replay the run.
  const std::vector<float> l(64, 0.0f);
  Sampler replay(untruncated(1.0f, a.seed()), 64);
  for (int i = 0; i < 200; ++i) CHECK(a.sample(l.data()) == replay.sample(l.data()));
}

TEST_CASE("sampler: top_k = 1 is greedy") {
  SamplerParams p = untruncated(1.5f, 5);
  p.top_k = 1;
  Sampler s(p, 100), g(greedy(), 100);
  for (int row = 0; row < 200; ++row) {
    const std::vector<float> l = wavy_logits(100, row);
    CHECK(s.sample(l.data()) == g.sample(l.data()));
  }
  Sampler s4(p, 4);
  const float tie[4] = {0.0f, 2.0f, 2.0f, 1.0f};
  for (int i = 0; i < 20; ++i) CHECK(s4.sample(tie) == 1);
}

TEST_CASE("sampler: top-k keeps exactly the k best") {
  SamplerParams p = untruncated(1.0f, 11);
  p.top_k = 3;
  Sampler s(p, 6);
  const std::vector<float> l = {0.0f, 1.0f, 0.9f, -1.0f, 1.1f, 0.5f};  // best three: 4, 1, 2
  const std::vector<int> h = histogram(s, l, 2000);
  CHECK(h[0] == 0);
  CHECK(h[3] == 0);
  CHECK(h[5] == 0);
  CHECK(h[1] > 0);
  CHECK(h[2] > 0);
  CHECK(h[4] > 0);
}

TEST_CASE("sampler: top-p keeps the smallest nucleus reaching p") {
  SamplerParams p = untruncated(1.0f, 21);
  p.top_p = 0.5f;
  Sampler s(p, 5);
  // 0.30 < 0.5, 0.30 + 0.25 >= 0.5: the nucleus is {0, 1}.
  const std::vector<float> l = logits_of_probs({0.30, 0.25, 0.20, 0.15, 0.10});
  const std::vector<int> h = histogram(s, l, 2000);
  CHECK(h[2] == 0);
  CHECK(h[3] == 0);
  CHECK(h[4] == 0);
  CHECK(h[0] > 0);
  CHECK(h[1] > 0);
  // Inside the nucleus the ratio is kept: 0.30 / 0.55 = 0.545.
  CHECK(h[0] / 2000.0 == doctest::Approx(0.30 / 0.55).epsilon(0.08));

  // top_p = 0 keeps only the best token.
  SamplerParams p0 = untruncated(1.0f, 22);
  p0.top_p = 0.0f;
  Sampler s0(p0, 5);
  const std::vector<int> h0 = histogram(s0, l, 300);
  CHECK(h0[0] == 300);
}

TEST_CASE("sampler: top-p on a large flat vocabulary sorts past the first 256") {
  // 5000 equal logits: the nucleus is the 2500 lowest ids (ties break by id), far
  // beyond the 256-entry head that is sorted first.
  SamplerParams p = untruncated(1.0f, 31);
  p.top_p = 0.5f;
  const int n = 5000;
  Sampler s(p, n);
  const std::vector<float> l(static_cast<size_t>(n), 0.25f);
  int32_t max_id = 0;
  for (int i = 0; i < 200; ++i) max_id = std::max(max_id, s.sample(l.data()));
  CHECK(max_id > 1500);
  CHECK(max_id <= 2501);
}

TEST_CASE("sampler: min-p drops tokens below min_p * p_max") {
  SamplerParams p = untruncated(1.0f, 41);
  p.min_p = 0.5f;
  Sampler s(p, 4);
  // p_max = 0.40, threshold 0.20: keeps 0.40 and 0.25, drops 0.19 and 0.16.
  const std::vector<float> l = logits_of_probs({0.40, 0.25, 0.19, 0.16});
  const std::vector<int> h = histogram(s, l, 2000);
  CHECK(h[2] == 0);
  CHECK(h[3] == 0);
  CHECK(h[0] > 0);
  CHECK(h[1] > 0);
}

TEST_CASE("sampler: min-p and top-p see the temperature-1 distribution") {
  // Temperature comes last in llama.cpp's chain: a high temperature flattens
  // what is drawn but does not let more tokens through the truncations.
  SamplerParams p = untruncated(100.0f, 51);
  p.min_p = 0.5f;
  Sampler s(p, 4);
  const std::vector<float> l = logits_of_probs({0.40, 0.25, 0.19, 0.16});
  const std::vector<int> h = histogram(s, l, 2000);
  CHECK(h[2] == 0);
  CHECK(h[3] == 0);
  CHECK(h[0] == doctest::Approx(1000).epsilon(0.15));  // near 50/50 at temp 100
}

TEST_CASE("sampler: draws match softmax(logits / temp)") {
  const std::vector<float> l = {1.0f, 0.0f, -0.5f, 2.0f, 0.3f, -2.0f, 1.5f, -4.0f};
  for (float temp : {1.0f, 0.5f, 2.0f}) {
    CAPTURE(temp);
    Sampler s(untruncated(temp, 61), static_cast<int32_t>(l.size()));
    const int draws = 20000;
    const std::vector<int> h = histogram(s, l, draws);
    const std::vector<double> prob = softmax(l, temp);
    double chi2 = 0.0;
    for (size_t i = 0; i < l.size(); ++i) {
      CAPTURE(i);
      const double expect = draws * prob[i];
      const double sigma = std::sqrt(draws * prob[i] * (1.0 - prob[i]));
      CHECK(std::fabs(h[i] - expect) <= 5.0 * sigma + 1.0);
      chi2 += (h[i] - expect) * (h[i] - expect) / expect;
    }
    // 7 degrees of freedom: P(chi2 > 29) is about 1.5e-4.
    CHECK(chi2 < 29.0);
  }
}

TEST_CASE("sampler: temperature 2 flattens, 0.5 sharpens") {
  const std::vector<float> l = wavy_logits(32, 3);
  Sampler hot(untruncated(2.0f, 71), 32), cold(untruncated(0.5f, 71), 32), one(untruncated(1.0f, 71), 32);
  const double e_hot = entropy_of(histogram(hot, l, 5000));
  const double e_one = entropy_of(histogram(one, l, 5000));
  const double e_cold = entropy_of(histogram(cold, l, 5000));
  CHECK(e_hot > e_one + 0.1);
  CHECK(e_one > e_cold + 0.1);
}

TEST_CASE("sampler: repetition penalty divides positive logits, multiplies negative ones") {
  SamplerParams p = greedy();
  p.repeat_penalty = 1.1f;

  Sampler pos(p, 3);
  const float lp[3] = {2.0f, 1.9f, 0.0f};
  CHECK(pos.sample(lp) == 0);  // (sample records 0 in the history)
  CHECK(pos.sample(lp) == 1);  // 2.0 / 1.1 = 1.82 < 1.9

  Sampler neg(p, 3);
  const float ln[3] = {-1.0f, -1.05f, -3.0f};
  neg.accept(0);
  // -1.0 * 1.1 = -1.1 < -1.05. Dividing instead (-0.91) would have kept 0 on top.
  CHECK(neg.sample(ln) == 1);

  Sampler fresh(p, 3);
  CHECK(fresh.sample(ln) == 0);
}

TEST_CASE("sampler: frequency and presence penalties") {
  const float l[2] = {2.0f, 1.5f};

  SamplerParams pf = greedy();
  pf.frequency_penalty = 0.2f;  // 2.0 - 0.2 * count
  Sampler f(pf, 2);
  f.accept(0);
  f.accept(0);
  CHECK(f.sample(l) == 0);  // 2.0 - 0.4 = 1.6 > 1.5; the draw adds a third 0
  CHECK(f.sample(l) == 1);  // 2.0 - 0.6 = 1.4 < 1.5

  SamplerParams pp = greedy();
  pp.presence_penalty = 0.6f;  // once, however often
  Sampler s(pp, 2);
  s.accept(0);
  CHECK(s.sample(l) == 1);  // 1.4 < 1.5
}

TEST_CASE("sampler: the penalty window is the last repeat_last_n tokens") {
  SamplerParams p = greedy();
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 3;
  const float l[8] = {2.0f, 1.5f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};

  Sampler in(p, 8);
  for (int32_t t : {0, 5, 6}) in.accept(t);  // 0 is still among the last three
  CHECK(in.sample(l) == 1);

  Sampler out(p, 8);
  for (int32_t t : {0, 5, 6, 7}) out.accept(t);  // 0 has left the window
  CHECK(out.sample(l) == 0);

  // reset() clears the history.
  in.reset();
  CHECK(in.sample(l) == 0);

  // repeat_last_n = 0: no penalties at all.
  SamplerParams off = p;
  off.repeat_last_n = 0;
  Sampler none(off, 8);
  none.accept(0);
  CHECK(none.sample(l) == 0);
  CHECK(none.sample(l) == 0);
}

TEST_CASE("sampler: NaN and infinite logits") {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();

  for (float temp : {0.0f, 1.0f}) {
    CAPTURE(temp);
    SamplerParams p = untruncated(temp, 81);
    Sampler s(p, 5);

    const float one_finite[5] = {nan, -inf, -inf, -3.0f, nan};
    for (int i = 0; i < 50; ++i) CHECK(s.sample(one_finite) == 3);

    const float all_neg_inf[5] = {-inf, -inf, -inf, -inf, -inf};
    CHECK(s.sample(all_neg_inf) == 0);
    const float all_nan[5] = {nan, nan, nan, nan, nan};
    CHECK(s.sample(all_nan) == 0);

    const float pos_inf[5] = {1.0f, 1e30f, inf, nan, 3.0f};
    for (int i = 0; i < 50; ++i) CHECK(s.sample(pos_inf) == 2);

    const float extremes[5] = {-FLT_MAX, FLT_MAX, -inf, FLT_MAX, nan};
    for (int i = 0; i < 50; ++i) {
      const int32_t t = s.sample(extremes);
      CHECK((t == 1 || t == 3));
    }
  }

  // Two +inf share the mass; the finite ones get none.
  Sampler s(untruncated(1.0f, 82), 4);
  const float two_inf[4] = {5.0f, inf, 0.0f, inf};
  const std::vector<int> h = histogram(s, std::vector<float>(two_inf, two_inf + 4), 400);
  CHECK(h[0] == 0);
  CHECK(h[2] == 0);
  CHECK(h[1] > 100);
  CHECK(h[3] > 100);
}

TEST_CASE("sampler: default chain on a DeepSeek-sized vocabulary") {
  const int32_t n_vocab = 129280;
  SamplerParams p;
  p.seed = 91;
  p.repeat_penalty = 1.1f;
  Sampler s(p, n_vocab);
  std::vector<float> l(static_cast<size_t>(n_vocab));
  for (int32_t i = 0; i < n_vocab; ++i) l[static_cast<size_t>(i)] = 0.001f * static_cast<float>((i * 7919) % 10007);
  for (int i = 0; i < 20; ++i) {
    const int32_t t = s.sample(l.data());
    // top-k 40 keeps the 40 largest logits, all >= 0.001 * (10007 - 40).
    CHECK(l[static_cast<size_t>(t)] >= 0.001f * (10007 - 40) - 1e-3f);
  }
}

TEST_CASE("sampler: invalid parameters throw") {
  auto bad = [](auto edit, int32_t n_vocab = 10) {
    SamplerParams p;
    edit(p);
    CHECK_THROWS_AS(Sampler(p, n_vocab), moe::Error);
  };
  bad([](SamplerParams&) {}, 0);
  bad([](SamplerParams&) {}, -5);
  bad([](SamplerParams& p) { p.top_p = 1.5f; });
  bad([](SamplerParams& p) { p.top_p = -0.1f; });
  bad([](SamplerParams& p) { p.top_p = NAN; });
  bad([](SamplerParams& p) { p.min_p = 1.5f; });
  bad([](SamplerParams& p) { p.min_p = NAN; });
  bad([](SamplerParams& p) { p.repeat_penalty = 0.0f; });
  bad([](SamplerParams& p) { p.repeat_penalty = -1.0f; });
  bad([](SamplerParams& p) { p.repeat_penalty = NAN; });
  bad([](SamplerParams& p) { p.repeat_last_n = -1; });
  bad([](SamplerParams& p) { p.temp = NAN; });
  bad([](SamplerParams& p) { p.temp = INFINITY; });
  bad([](SamplerParams& p) { p.frequency_penalty = INFINITY; });
  bad([](SamplerParams& p) { p.presence_penalty = NAN; });

  CHECK_THROWS_WITH_AS(Sampler([] { SamplerParams p; p.top_p = 2.0f; return p; }(), 10),
                       doctest::Contains("top_p"), moe::Error);

  // Allowed edges: negative temp (greedy), top_p 0 and 1, min_p <= 0 and 1, top_k <= 0.
  SamplerParams ok;
  ok.temp = -1.0f;
  ok.top_p = 0.0f;
  ok.min_p = -1.0f;
  ok.top_k = -3;
  CHECK_NOTHROW(Sampler(ok, 10));
  ok.top_p = 1.0f;
  ok.min_p = 1.0f;
  CHECK_NOTHROW(Sampler(ok, 10));

  Sampler s(SamplerParams{}, 10);
  CHECK_THROWS_AS(s.accept(-1), moe::Error);
  CHECK_THROWS_AS(s.accept(10), moe::Error);
  CHECK_THROWS_AS(s.sample(nullptr), moe::Error);
}
