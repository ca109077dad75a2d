// Many sequences in one session (runtime/inference_session.h forward_spans):
// a sequence stepped together with others gets the logits it gets alone.
// Its tokens attend to its own slot of the cache only, its prompt chunks run
// as single spans as alone, and a step of several sequences keeps every
// product row on the kernels it would take alone (batch-invariant: no
// repacked GEMM, whose float order differs), so the logits must be
// identical, quantized or not. The test would fail by 0.13 in a logit if the
// GEMM took the decoding rows of 20 sequences.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

#include "cpu/gemm_q8.h"
#include "model/deepseek2.h"
#include "runtime/backend_registry.h"
#include "runtime/parallel_generate.h"
#include "test_util.h"

using namespace moe;

namespace {

const std::string kDefaultModel = std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf";

std::vector<int32_t> random_tokens(std::mt19937& rng, int64_t n, int64_t n_vocab) {
  std::uniform_int_distribution<int32_t> d(3, static_cast<int32_t>(n_vocab) - 1);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = d(rng);
  return t;
}

// Sequence k's prompt is prompts[k] followed by decode tokens, one per step.
// Returns the logits of sequence 0 after its prompt and after each decode,
// run alone (n_seq = 1) or beside n_others other sequences.
struct Run {
  std::vector<std::vector<float>> logits;  // [step][n_vocab]
};

Run run_sequences(const Deepseek2Model& model, const std::vector<std::vector<int32_t>>& prompts,
                  const std::vector<std::vector<int32_t>>& decodes, int64_t n_seq) {
  Deepseek2Session s(model, [&] {
    SessionOptions o;
    o.n_ctx = 256;
    o.n_batch = 32;
    o.n_seq = n_seq;
    o.backends.n_threads = 2;
    return o;
  }());
  const int64_t V = s.n_vocab();
  Run r;
  // Prompts, each sequence's chunks (n_batch = 32) as single spans.
  for (int64_t k = 0; k < n_seq; ++k) {
    const auto& p = prompts[static_cast<size_t>(k)];
    std::vector<float> l(static_cast<size_t>(V));
    for (size_t done = 0; done < p.size();) {
      const int64_t n = std::min<int64_t>(32, static_cast<int64_t>(p.size() - done));
      const bool last = done + static_cast<size_t>(n) == p.size();
      s.forward_spans(p.data() + done, {{static_cast<int32_t>(k), n, last}}, l.data());
      done += static_cast<size_t>(n);
    }
    if (k == 0) r.logits.push_back(l);
  }
  for (size_t step = 0; step < decodes[0].size(); ++step) {
    std::vector<int32_t> tokens;
    std::vector<SeqSpan> spans;
    for (int64_t k = 0; k < n_seq; ++k) {
      tokens.push_back(decodes[static_cast<size_t>(k)][step]);
      spans.push_back({static_cast<int32_t>(k), 1, true});
    }
    std::vector<float> l(static_cast<size_t>(n_seq * V));
    s.forward_spans(tokens.data(), spans, l.data());
    r.logits.emplace_back(l.begin(), l.begin() + V);
  }
  return r;
}

double max_abs_diff(const Run& a, const Run& b) {
  REQUIRE(a.logits.size() == b.logits.size());
  double m = 0;
  for (size_t i = 0; i < a.logits.size(); ++i)
    for (size_t j = 0; j < a.logits[i].size(); ++j)
      m = std::max(m, static_cast<double>(std::fabs(a.logits[i][j] - b.logits[i][j])));
  return m;
}

// repack: the file read into memory, its routed experts interleaved for the
// CPU's kernels (paired tokens there must not see each other either).
void check_batched_equals_alone(const std::string& path, bool repack = false) {
  const auto model = Deepseek2Model::load(path, /*map=*/!repack, repack);
  if (repack) REQUIRE(model->repacked().count() > 0);
  const int64_t V = model->config().vocab_size;
  std::mt19937 rng(11);
  for (int64_t n_seq : {4, 20}) {
    CAPTURE(n_seq);
    std::vector<std::vector<int32_t>> prompts, decodes;
    for (int64_t k = 0; k < n_seq; ++k) {
      prompts.push_back(random_tokens(rng, 5 + (9 * k) % 40 + (k == 0 ? 20 : 0), V));  // sequence 0: 25 tokens, a GEMM chunk
      decodes.push_back(random_tokens(rng, 6, V));
    }
    const Run batched = run_sequences(*model, prompts, decodes, n_seq);
    const Run alone = run_sequences(*model, {prompts[0]}, {decodes[0]}, 1);
    REQUIRE(batched.logits.size() == 7);
    const double d = max_abs_diff(batched, alone);
    MESSAGE(path << ": " << n_seq << " sequences, max |logit batched - alone| = " << d);
    CHECK(d == 0);
  }
}

}  // namespace

TEST_CASE("multi-sequence: f32 logits of a sequence batched with others equal its logits alone, bit for bit") {
  check_batched_equals_alone(test::trained_model_f32(test::temp_dir()));
}

TEST_CASE("multi-sequence: quantized logits of a sequence batched with others equal its logits alone, bit for bit") {
  check_batched_equals_alone(kDefaultModel);
  if (host_reads_repacked_weights()) check_batched_equals_alone(kDefaultModel, /*repack=*/true);
  else test::skip("the repacked experts: this CPU has no kernel for them (AVX-512 VNNI)");
}

TEST_CASE("multi-sequence: the random V3 fixture's logits batched equal its logits alone, bit for bit") {
  check_batched_equals_alone(test::local_fixture("tiny-dsv3.Q4_K_M.gguf"));
}

TEST_CASE("multi-sequence: DeepSeek-V3.2's sparse attention batched equals alone, bit for bit (index keys per sequence)") {
  const std::string path = test::shared_fixture("models/tiny-dsv32.Q8_0.gguf");
  if (path.empty()) return test::skip("tiny-dsv32.Q8_0 fixture not found");
  check_batched_equals_alone(path);
}

TEST_CASE("shared_prefixes: the longest prefix shared with any other prompt, short of the last token") {
  const std::vector<std::vector<int32_t>> p = {{1, 2, 3, 4}, {1, 2, 3, 5}, {1, 2}, {9}, {1, 2, 3, 4, 6}, {7, 7}, {7, 7}};
  std::vector<const std::vector<int32_t>*> ptrs;
  for (const auto& v : p) ptrs.push_back(&v);
  CHECK(shared_prefixes(ptrs) == std::vector<size_t>{3, 3, 1, 0, 4, 1, 1});
}

TEST_CASE("multi-sequence: a copied prefix continues as the evaluated one, bit for bit") {
  const auto model = Deepseek2Model::load(kDefaultModel);
  SessionOptions o;
  o.n_ctx = 64;
  o.n_batch = 8;
  o.n_seq = 3;
  o.backends.n_threads = 2;
  Deepseek2Session s(*model, o);
  std::mt19937 rng(5);
  const std::vector<int32_t> prefix = random_tokens(rng, 16, s.n_vocab()), rest = random_tokens(rng, 5, s.n_vocab());
  std::vector<float> a(static_cast<size_t>(s.n_vocab())), b(a.size()), junk(a.size());
  // Sequence 0 evaluates prefix then rest; sequence 1 holds other tokens,
  // then takes sequence 0's prefix and evaluates the same rest.
  s.forward_spans(prefix.data(), {{0, 8, false}}, junk.data());
  s.forward_spans(prefix.data() + 8, {{0, 8, false}}, junk.data());
  s.forward_spans(random_tokens(rng, 7, s.n_vocab()).data(), {{1, 7, true}}, junk.data());
  s.seq_copy(0, 1, 16);
  CHECK(s.seq_pos(1) == 16);
  s.forward_spans(rest.data(), {{0, 5, true}}, a.data());
  s.forward_spans(rest.data(), {{1, 5, true}}, b.data());
  CHECK(a == b);
  // Without the copy the rest sees other tokens: the logits differ.
  s.seq_truncate(2, 0);
  s.forward_spans(rest.data(), {{2, 5, true}}, junk.data());
  CHECK(junk != a);
}

// Speculative decoding verifies [next, drafts] in one step of one sequence
// (InferenceSession::forward_verify): its rows must be what steps of one
// token would give, so they take the batch-invariant kernels, as a step
// beside another sequence does. 24 tokens would take the repacked GEMM in a
// plain forward() (a different float order: checked below, so the test can
// fail).
TEST_CASE("multi-sequence: a verify step's rows are those of a step beside another sequence, bit for bit") {
  for (const bool repack : {false, true}) {
    if (repack && !host_reads_repacked_weights()) {
      test::skip("the repacked experts: this CPU has no kernel for them (AVX-512 VNNI)");
      continue;
    }
    CAPTURE(repack);
    const auto model = Deepseek2Model::load(kDefaultModel, /*map=*/!repack, repack);
    const int64_t V = model->config().vocab_size, n = 24;
    std::mt19937 rng(5);
    const std::vector<int32_t> prefix = random_tokens(rng, 10, V), block = random_tokens(rng, n, V);
    const std::vector<int32_t> other = random_tokens(rng, 4, V);
    const auto session = [&] {
      SessionOptions o;
      o.n_ctx = 128;
      o.n_batch = 32;
      o.n_seq = 2;
      o.backends.n_threads = 2;
      return std::make_unique<Deepseek2Session>(*model, o);
    };
    std::vector<float> scratch(static_cast<size_t>((n + 1) * V));

    auto verify = session();
    verify->forward(prefix.data(), 10, scratch.data(), false);
    std::vector<float> got(static_cast<size_t>(n * V));
    verify->forward_verify(block.data(), n, got.data());

    auto beside = session();
    beside->forward_spans(prefix.data(), {{0, 10, true}}, scratch.data());
    beside->forward_spans(other.data(), {{1, 3, true}}, scratch.data());
    std::vector<int32_t> step = block;
    step.push_back(other[3]);
    std::vector<float> both(static_cast<size_t>((n + 1) * V));
    beside->forward_spans(step.data(), {{0, n, true, true}, {1, 1, true}}, both.data());
    const std::vector<float> want(both.begin(), both.begin() + n * V);
    CHECK(got == want);

    auto plain = session();
    plain->forward(prefix.data(), 10, scratch.data(), false);
    std::vector<float> fast(static_cast<size_t>(n * V));
    plain->forward(block.data(), n, fast.data(), true);
    double d = 0;
    for (size_t i = 0; i < fast.size(); ++i) d = std::max(d, static_cast<double>(std::fabs(fast[i] - want[i])));
    MESSAGE("max |logit plain forward - invariant| = " << d);
    if (gemm_available(GgmlType::Q4_K)) CHECK(d > 0);
  }
}
