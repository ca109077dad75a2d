// Speculative decoding with the model's MTP module (model/deepseek2_mtp.cpp,
// runtime/generate.cpp): drafts never change the output. Greedy answers are
// token for token those without drafts (prompts of several lengths, prompt
// chunks smaller than the prompt, chained drafts, the context nearly full);
// sampled answers keep the model's distribution (Sampler::sample_speculative
// against sample() by chi-square, and whole answers on the default model);
// the module's drafts are good on held-out text (it is wired as trained).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <variant>

#include <nlohmann/json.hpp>

#include "model/deepseek2.h"
#include "runtime/generate.h"
#include "runtime/parallel_generate.h"
#include "test_util.h"

using namespace moe;

namespace {

const std::string kDefaultModel = std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf";

SessionOptions options(int64_t n_ctx, int64_t n_batch, bool mtp) {
  SessionOptions o;
  o.n_ctx = n_ctx;
  o.n_batch = n_batch;
  o.backends.n_threads = 2;
  o.mtp = mtp;
  return o;
}

GenerateResult run(InferenceSession& s, const Tokenizer& tok, const SamplerParams& sp, const std::vector<int32_t>& prompt,
                   int64_t n_predict, int64_t n_draft, int64_t chunk = 512) {
  return test::answer(s, tok, sp, prompt, n_predict, n_draft, chunk);
}

// Sessions with the module, n_seq sequences of 128 positions.
test::SessionMaker with_module(const Deepseek2Model& model) {
  return [&model](int64_t n_seq) {
    SessionOptions o = options(128, 512, true);
    o.n_seq = n_seq;
    return std::make_unique<Deepseek2Session>(model, o);
  };
}

SamplerParams greedy() {
  SamplerParams p;
  p.temp = 0.0f;
  p.seed = 1;
  return p;
}

std::string heldout_text() {
  std::ifstream in(test::local_fixture("kjv-heldout-ruth.txt"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("MTP drafts: greedy answers are token for token the answers without them") {
  const auto model = Deepseek2Model::load(kDefaultModel);
  REQUIRE(model->weights().mtp);
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  const std::string text = heldout_text();
  const std::vector<int32_t> all = tok.encode(text, true, true);
  REQUIRE(all.size() > 300);
  // n_ctx 160: the longest prompt leaves 40 positions, so the answers run
  // into the end of the context, where drafts must shrink.
  for (const int64_t n_prompt : {1, 7, 40, 120}) {
    const std::vector<int32_t> prompt(all.begin(), all.begin() + n_prompt);
    Deepseek2Session plain(*model, options(160, 512, false));
    const GenerateResult want = run(plain, tok, greedy(), prompt, 96, 0);
    for (const int64_t n_draft : {1, 3}) {
      for (const int64_t n_batch : {512, 16}) {  // 16: the prompt reaches the module in chunks
        CAPTURE(n_prompt);
        CAPTURE(n_draft);
        CAPTURE(n_batch);
        Deepseek2Session s(*model, options(160, n_batch, true));
        const GenerateResult got = run(s, tok, greedy(), prompt, 96, n_draft, n_batch);
        CHECK(got.generated == want.generated);
        CHECK(got.finish == want.finish);
        CHECK(s.n_past() == plain.n_past());
        CHECK(got.n_drafted > 0);
        CHECK(got.n_accepted <= got.n_drafted);
      }
    }
  }
}

TEST_CASE("MTP drafts: the module predicts held-out text as trained (most greedy drafts accepted)") {
  const auto model = Deepseek2Model::load(kDefaultModel);
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  const std::vector<int32_t> all = tok.encode(heldout_text(), true, true);
  // Teacher-forced over the held-out text: at each position the module's
  // draft for the token after next, against the trunk's own choice there.
  Deepseek2Session s(*model, options(256, 512, true));
  const int64_t V = s.n_vocab(), n = 200;
  std::vector<float> logits(static_cast<size_t>(n * V));
  s.forward(all.data(), 1, logits.data(), false);
  int64_t agree = 0, total = 0;
  for (int64_t i = 1; i + 1 < n; ++i) {
    int32_t draft = -1;
    // The module sees (h_{i-1}, t_i) and drafts t_{i+1}.
    REQUIRE(s.mtp_draft(0, all[static_cast<size_t>(i)], 1, &draft) == 1);
    s.forward(&all[static_cast<size_t>(i)], 1, logits.data(), false);
    const int32_t trunk = static_cast<int32_t>(std::max_element(logits.begin(), logits.begin() + V) - logits.begin());
    agree += draft == trunk;
    ++total;
  }
  const double rate = static_cast<double>(agree) / static_cast<double>(total);
  MESSAGE("MTP drafts agreeing with the trunk's greedy choice on held-out Ruth: " << agree << " of " << total);
  CHECK(rate > 0.5);  // random drafts agree about 1 time in 4096
}

TEST_CASE("MTP drafts: a file without the module is refused by name") {
  const std::string path = test::local_fixture("tiny-dsv3.Q4_K_M.gguf");
  const auto model = Deepseek2Model::load(path);
  CHECK_FALSE(model->weights().mtp);
  CHECK_THROWS_WITH_AS(Deepseek2Session(*model, options(64, 16, true)),
                       doctest::Contains("has no MTP layer"), Error);
}

TEST_CASE("speculative sampling: a drafted token leaves the distribution unchanged (chi-square)") {
  // Logits over 8 tokens; the draft is a likely token, an unlikely one, and
  // one that top-k removes.
  const std::vector<float> logits = {2.0f, 1.5f, 1.0f, 0.5f, 0.0f, -0.5f, -1.0f, -4.0f};
  for (const int32_t draft : {0, 4, 7}) {
    SamplerParams p;
    p.temp = 0.9f;
    p.top_k = 6;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 7;
    Sampler plain(p, 8), spec(p, 8);
    const int n = 40000;
    std::vector<double> a(8, 0.0), b(8, 0.0);
    for (int i = 0; i < n; ++i) {
      a[static_cast<size_t>(plain.sample(logits.data()))] += 1;
      b[static_cast<size_t>(spec.sample_speculative(logits.data(), draft))] += 1;
    }
    // Two-sample chi-square over the tokens either drew: 5 degrees of
    // freedom at most; 25 is beyond p = 0.0002.
    double chi2 = 0;
    for (size_t t = 0; t < 8; ++t)
      if (a[t] + b[t] > 0) chi2 += (a[t] - b[t]) * (a[t] - b[t]) / (a[t] + b[t]);
    CAPTURE(draft);
    CHECK(chi2 < 25.0);
    CHECK(a[7] == 0);  // top-k keeps 6: token 7 is never drawn, drafted or not
    CHECK(b[7] == 0);
    CHECK(a[6] == 0);
    CHECK(b[6] == 0);
  }
}

TEST_CASE("MTP drafts: sampled answers keep the model's distribution (chi-square over seeds)") {
  const auto model = Deepseek2Model::load(kDefaultModel);
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  const std::vector<int32_t> prompt = tok.encode("And Naomi said unto her", true, true);
  Deepseek2Session plain(*model, options(64, 64, false)), spec(*model, options(64, 64, true));
  // The second and third sampled tokens (the first comes from the prompt's
  // logits in both; later ones follow drafts) as one outcome.
  std::map<std::pair<int32_t, int32_t>, std::array<double, 2>> counts;
  const int n = 1500;
  int64_t drafted = 0, accepted = 0;
  for (int i = 0; i < n; ++i) {
    SamplerParams p;
    p.temp = 1.0f;
    p.top_k = 4;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = static_cast<uint64_t>(1000 + i);
    plain.reset();
    spec.reset();
    const GenerateResult a = run(plain, tok, p, prompt, 3, 0);
    const GenerateResult b = run(spec, tok, p, prompt, 3, 1);
    REQUIRE(a.generated.size() == 3);
    REQUIRE(b.generated.size() == 3);
    counts[{a.generated[1], a.generated[2]}][0] += 1;
    counts[{b.generated[1], b.generated[2]}][1] += 1;
    drafted += b.n_drafted;
    accepted += b.n_accepted;
  }
  // Outcomes seen fewer than 20 times in both runs together pooled into one.
  double chi2 = 0, rare_a = 0, rare_b = 0;
  int dof = -1;
  for (const auto& [k, c] : counts) {
    if (c[0] + c[1] < 20) {
      rare_a += c[0];
      rare_b += c[1];
      continue;
    }
    chi2 += (c[0] - c[1]) * (c[0] - c[1]) / (c[0] + c[1]);
    ++dof;
  }
  if (rare_a + rare_b > 0) {
    chi2 += (rare_a - rare_b) * (rare_a - rare_b) / (rare_a + rare_b);
    ++dof;
  }
  MESSAGE("chi-square " << chi2 << " over " << dof << " degrees of freedom; drafts accepted " << accepted << " of "
                        << drafted);
  REQUIRE(dof >= 3);
  // The 0.9999 quantile of chi-square with k degrees of freedom is below
  // k + 4.5 sqrt(2k) + 10 for these k.
  CHECK(chi2 < dof + 4.5 * std::sqrt(2.0 * dof) + 10);
  CHECK(accepted > 0);
  CHECK(accepted < drafted);  // sampling rejects some drafts
}

TEST_CASE("MTP drafts: moe-synth --mtp writes a module that loads, shares the trunk's embedding and head, and drafts") {
  const std::string hf = test::shared_fixture("hf/hf-tiny-dsv3");
  const std::string vocab = test::shared_fixture("models/tiny-dsv3.f32.gguf");
  if (hf.empty() || vocab.empty()) return test::skip("hf-tiny-dsv3 fixture not found");
  const std::string out = test::temp_dir() + "/mtp.gguf";
  const auto r = test::run_command({test::bin_dir() + "/moe-synth", "--config", hf, "--vocab", vocab, "--mtp", "--type",
                                    "Q8_0", "-o", out});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const auto model = Deepseek2Model::load(out);
  REQUIRE_MESSAGE(model->weights().mtp, model->weights().mtp_missing);
  const MtpWeights& m = *model->weights().mtp;
  CHECK(m.embed.data == model->weights().token_embd.data);
  CHECK(m.head.data == model->weights().output.data);
  CHECK(std::holds_alternative<MoeWeights>(m.block.ffn));
  // Random weights: drafts are mostly wrong, and the answers still the same.
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  const std::vector<int32_t> prompt = tok.encode("In the beginning God created", true, true);
  Deepseek2Session plain(*model, options(96, 8, false)), spec(*model, options(96, 8, true));
  const GenerateResult want = run(plain, tok, greedy(), prompt, 60, 0, 8);
  const GenerateResult got = run(spec, tok, greedy(), prompt, 60, 2, 8);
  CHECK(got.generated == want.generated);
  CHECK(got.n_drafted > 0);
}

TEST_CASE("MTP drafts: context shifts in the middle of drafting keep the answer") {
  const auto model = Deepseek2Model::load(kDefaultModel);
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  const std::vector<int32_t> prompt = tok.encode("And it came to pass", true, true);
  const auto answer = [&](bool mtp) {
    Deepseek2Session s(*model, options(48, 512, mtp));
    Sampler sampler(greedy(), static_cast<int32_t>(s.n_vocab()));
    GenerateOptions g;
    g.n_predict = 150;  // three times the context: several shifts
    g.ignore_eos = true;
    g.shift_keep = 2;
    g.spec_draft_n = mtp ? 2 : 0;
    return generate(s, tok, sampler, prompt, g, [](std::string_view) {}, [] { return false; });
  };
  const GenerateResult want = answer(false), got = answer(true);
  CHECK(got.generated == want.generated);
  CHECK(got.generated.size() == 150);
  CHECK(got.n_accepted > 0);
}

// generate_parallel (--batch -np N): each sequence drafts on its own and
// verifies its drafts in the shared step. The answers equal those of a run
// without drafts, whether the step has room for every draft (n_batch 512)
// or cuts them short (n_batch 5: three sequences leave room for two drafts
// in all), with a shared prompt prefix copied between slots and requests
// that end at different lengths.
TEST_CASE("MTP drafts in batch mode: greedy answers of many sequences equal those without drafts") {
  const auto model = Deepseek2Model::load(kDefaultModel);
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  const std::vector<int32_t> all = tok.encode(heldout_text(), true, true);
  REQUIRE(all.size() > 300);
  std::vector<ParallelRequest> requests;
  for (const auto& [first, len, n_predict] : std::vector<std::array<int, 3>>{
           {0, 12, 40}, {0, 30, 25}, {100, 5, 48}, {200, 60, 33}, {0, 12, 17}, {150, 1, 40}}) {
    ParallelRequest q;
    q.prompt.assign(all.begin() + first, all.begin() + first + len);
    q.sampling = greedy();
    q.options.n_predict = n_predict;
    q.options.ignore_eos = true;
    q.options.prompt_chunk = 16;
    requests.push_back(q);
  }
  {
    std::vector<const std::vector<int32_t>*> prompts;
    for (const ParallelRequest& r : requests) prompts.push_back(&r.prompt);
    const std::vector<size_t> shared = shared_prefixes(prompts);
    for (size_t i = 0; i < requests.size(); ++i) requests[i].shared_prefix = shared[i];
  }
  const auto answer_all = [&](int64_t n_batch, int64_t n_draft, int64_t& drafted, int64_t& accepted) {
    SessionOptions o = options(256, n_batch, n_draft > 0);
    o.n_seq = 3;
    Deepseek2Session s(*model, o);
    std::vector<ParallelRequest> qs = requests;
    for (ParallelRequest& q : qs) q.options.spec_draft_n = n_draft;
    std::vector<std::vector<int32_t>> out(qs.size());
    drafted = accepted = 0;
    const size_t left = generate_parallel(
        s, tok, qs,
        [&](size_t i, GenerateResult& r, uint64_t) {
          out[i] = r.generated;
          drafted += r.n_drafted;
          accepted += r.n_accepted;
          CHECK(r.n_generated == qs[i].options.n_predict);
        },
        [] { return false; });
    CHECK(left == 0);
    return out;
  };
  int64_t drafted = 0, accepted = 0;
  const auto want = answer_all(512, 0, drafted, accepted);
  CHECK(drafted == 0);
  for (const auto& [n_batch, n_draft] : std::vector<std::pair<int64_t, int64_t>>{{512, 1}, {512, 3}, {5, 3}}) {
    CAPTURE(n_batch);
    CAPTURE(n_draft);
    const auto got = answer_all(n_batch, n_draft, drafted, accepted);
    for (size_t i = 0; i < want.size(); ++i) {
      CAPTURE(i);
      CHECK(got[i] == want[i]);
    }
    CHECK(drafted > 0);
    CHECK(accepted * 2 > drafted);  // the module is good at this text
  }
}

// mtp_draft_many: sequences drafting in one pass of the module get the
// drafts each would get alone (chained drafts of different lengths, a
// sequence asked for none, a sequence asked twice).
TEST_CASE("MTP drafts of many sequences in one pass equal each sequence's drafts alone") {
  const auto model = Deepseek2Model::load(kDefaultModel);
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  const std::vector<int32_t> all = tok.encode(heldout_text(), true, true);
  // first, length, drafts
  test::check_drafts_together_equal_alone(with_module(*model), all, {{0, 20, 3}, {50, 7, 1}, {120, 33, 4}, {200, 12, 0}},
                                          1, true);
}

// DeepSeek-V3.2: the module's block has a lightning indexer of its own, so it
// keeps index keys of its own (one more layer per sequence beside the
// trunk's). A tiny V3.2 with a module (moe-synth --mtp) whose top_k (16) is
// below the prompts: answers with drafts equal those without, through
// prompt chunks, chained drafts and context shifts, and the drafts of many
// sequences in one pass equal each one's alone (a key written into another
// sequence's or the trunk's rows would change them).
TEST_CASE("MTP drafts on DeepSeek-V3.2: greedy answers unchanged, drafts of many sequences equal drafts alone") {
  const std::string hf = test::shared_fixture("hf/hf-tiny-dsv3");
  const std::string vocab = test::shared_fixture("models/tiny-dsv32.f32.gguf");
  if (hf.empty() || vocab.empty()) return test::skip("hf-tiny-dsv3 / tiny-dsv32.f32.gguf fixtures not found");
  const std::vector<uint8_t> text = test::read_file(hf + "/config.json");
  auto config = nlohmann::json::parse(text.begin(), text.end());
  config["architectures"] = {"DeepseekV32ForCausalLM"};
  config["index_n_heads"] = 4;
  config["index_head_dim"] = 64;
  config["index_topk"] = 16;
  const std::string dir = test::temp_dir(), cfg = dir + "/config.json", out = dir + "/v32-mtp.gguf";
  const std::string dumped = config.dump();
  test::write_file(cfg, dumped.data(), dumped.size());
  const auto r = test::run_command({test::bin_dir() + "/moe-synth", "--config", cfg, "--vocab", vocab, "--mtp", "--type",
                                    "Q8_0", "-o", out});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const auto model = Deepseek2Model::load(out);
  REQUIRE(model->config().has_indexer());
  REQUIRE_MESSAGE(model->weights().mtp, model->weights().mtp_missing);
  REQUIRE(model->weights().mtp->block.mla.indexer.has_value());
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  const std::vector<int32_t> all = tok.encode(heldout_text(), true, true);
  REQUIRE(all.size() > 200);

  for (const int64_t n_prompt : {5, 40}) {
    CAPTURE(n_prompt);
    const std::vector<int32_t> prompt(all.begin(), all.begin() + n_prompt);
    Deepseek2Session plain(*model, options(128, 8, false)), spec(*model, options(128, 8, true));
    const GenerateResult want = run(plain, tok, greedy(), prompt, 60, 0, 8);
    const GenerateResult got = run(spec, tok, greedy(), prompt, 60, 2, 8);
    CHECK(got.generated == want.generated);
    CHECK(got.n_drafted > 0);
  }
  {  // context shifts while drafting: the module's keys move with its rows
    const std::vector<int32_t> prompt(all.begin(), all.begin() + 20);
    const auto answer = [&](bool mtp) {
      Deepseek2Session s(*model, options(48, 512, mtp));
      Sampler sampler(greedy(), static_cast<int32_t>(s.n_vocab()));
      GenerateOptions g;
      g.n_predict = 120;
      g.ignore_eos = true;
      g.shift_keep = 2;
      g.spec_draft_n = mtp ? 2 : 0;
      return generate(s, tok, sampler, prompt, g, [](std::string_view) {}, [] { return false; });
    };
    CHECK(answer(true).generated == answer(false).generated);
  }

  // Two rounds: the second catches the module up over rows the first wrote.
  test::check_drafts_together_equal_alone(with_module(*model), all, {{0, 40, 2}, {50, 7, 1}, {100, 30, 3}}, 2, false);
}
