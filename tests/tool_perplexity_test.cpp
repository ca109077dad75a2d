// moe-perplexity against llama.cpp's llama-perplexity, and the statistics
// of runtime/perplexity.h against hand-derived values.
//
// The reference is tests/fixtures/llama-perplexity-reference.json, written by
// scripts/make-perplexity-reference.sh from the peer's llama-perplexity on
// tests/fixtures/perplexity-text.txt with -c 128 and an f32 KV cache: the
// running estimate per chunk and the final PPL +/- of four fixture models,
// the KL statistics of tiny-dsv3.Q4_K_M against tiny-dsv3.f32, the layout
// of llama.cpp's base log-probability file, and its too-short-text message.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "runtime/expert_stats.h"
#include "runtime/kld_base_file.h"
#include "runtime/perplexity.h"
#include "test_util.h"

namespace {

using Json = nlohmann::json;
using moe::test::run_command;

Json reference() {
  std::ifstream in(moe::test::local_fixture("llama-perplexity-reference.json"));
  REQUIRE(in.good());
  return Json::parse(in);
}

std::string tool() { return moe::test::bin_dir() + "/moe-perplexity"; }
std::string text_file() { return moe::test::local_fixture("perplexity-text.txt"); }

struct PplOutput {
  std::vector<double> chunks;
  double ppl = 0, unc = 0;
  bool has_final = false;
};

PplOutput parse_ppl(const std::string& out) {
  PplOutput r;
  const std::regex chunk(R"(\[(\d+)\]([0-9.eE+-]+),)");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), chunk); it != std::sregex_iterator(); ++it)
    r.chunks.push_back(std::stod((*it)[2]));
  std::smatch m;
  if (std::regex_search(out, m, std::regex(R"(Final estimate: PPL = ([0-9.eE+-]+) \+/- ([0-9.eE+-]+))"))) {
    r.ppl = std::stod(m[1]);
    r.unc = std::stod(m[2]);
    r.has_final = true;
  }
  return r;
}

// "value ± unc" after a label of llama.cpp's KL statistics.
bool parse_stat(const std::string& out, const std::string& label_regex, double& value, double& unc) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex(label_regex + R"(\s*: +(\S+) ± +(\S+))"))) return false;
  value = std::stod(m[1]);
  unc = std::stod(m[2]);
  return true;
}

double rel_diff(double a, double b) { return std::fabs(a - b) / std::max(std::fabs(b), 1e-300); }

}  // namespace

// ---- the statistics, from their definitions --------------------------------

TEST_CASE("perplexity: token_nll is -log softmax") {
  const float logits[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  const long double z = std::exp(1.0L) + std::exp(2.0L) + std::exp(3.0L) + std::exp(4.0L);
  for (int t = 0; t < 4; ++t) CHECK(moe::token_nll(logits, 4, t) == doctest::Approx(-std::log(std::exp(t + 1.0L) / z)));
  // Large logits must not overflow: the maximum is subtracted first.
  const float big[3] = {1000.0f, 1000.0f, 1000.0f};
  CHECK(moe::token_nll(big, 3, 1) == doctest::Approx(std::log(3.0)));
}

TEST_CASE("perplexity: final estimate and its uncertainty") {
  // NLLs 1, 2, 3: mean 2, population variance 2/3, standard error of the
  // mean sqrt((2/3)/(3-1)); PPL = e^2, +/- e^2 times that.
  moe::NllSums s;
  for (double v : {1.0, 2.0, 3.0}) s.add(v);
  const moe::PplEstimate e = moe::final_estimate(s);
  REQUIRE(e.ok);
  CHECK(e.ppl == doctest::Approx(std::exp(2.0)));
  CHECK(e.uncertainty == doctest::Approx(std::exp(2.0) * std::sqrt(1.0 / 3.0)));
  CHECK(s.ppl() == doctest::Approx(std::exp(2.0)));
  moe::NllSums flat;
  flat.add(1.5);
  flat.add(1.5);
  CHECK_FALSE(moe::final_estimate(flat).ok);  // zero variance: no estimate
}

TEST_CASE("perplexity: compact log-prob rows") {
  // Odd vocabulary: 5 codes rounded up to 6, plus 4 for the two floats.
  CHECK(moe::log_prob_row_u16(5) == 10);
  CHECK(moe::log_prob_row_u16(2060) == 2064);
  const float logits[5] = {0.0f, -20.0f, 1.0f, 2.0f, 0.5f};
  std::vector<uint16_t> row(10, 0xffff);
  const double nll = moe::encode_log_probs(logits, 5, 2, row.data());
  const double z = 1 + std::exp(-20.0) + std::exp(1.0) + std::exp(2.0) + std::exp(0.5);
  CHECK(nll == doctest::Approx(-std::log(std::exp(1.0) / z)));
  float header[2];
  std::memcpy(header, row.data(), sizeof(header));
  // Kept range: max - 16 .. max, so scale = 16 / 65535 and the floor is
  // log p at max - 16.
  CHECK(header[0] == doctest::Approx(16.0 / 65535));
  CHECK(header[1] == doctest::Approx(2.0 - 16.0 - std::log(z)));
  CHECK(row[4 + 3] == 65535);  // the maximum
  CHECK(row[4 + 1] == 0);      // below the floor
  CHECK(row[9] == 0);          // padding
  for (int i = 0; i < 5; ++i) {
    if (i == 1) continue;
    CHECK(moe::decoded_log_prob(row.data(), i) == doctest::Approx(logits[i] - std::log(z)).epsilon(1e-3));
  }
}

TEST_CASE("perplexity: KL divergence of hand-made distributions") {
  // Base p = softmax(b), Q = softmax(q): KL(p||q) = sum p (log p - log q).
  const float b[3] = {2.0f, 1.0f, 0.0f};
  const float q[3] = {0.0f, 1.0f, 2.0f};
  std::vector<uint16_t> row(static_cast<size_t>(moe::log_prob_row_u16(3)));
  moe::encode_log_probs(b, 3, 0, row.data());
  auto log_softmax = [](const float* x, int i) {
    double z = 0;
    for (int k = 0; k < 3; ++k) z += std::exp(static_cast<double>(x[k]));
    return x[i] - std::log(z);
  };
  double kl = 0;
  for (int i = 0; i < 3; ++i) kl += std::exp(log_softmax(b, i)) * (log_softmax(b, i) - log_softmax(q, i));
  moe::KldSums s;
  const moe::KldToken t = moe::add_kld_token(q, 3, row.data(), 1, s);
  CHECK(t.kld == doctest::Approx(kl).epsilon(1e-3));
  CHECK(t.p_diff == doctest::Approx(std::exp(log_softmax(q, 1)) - std::exp(log_softmax(b, 1))).epsilon(1e-3));
  CHECK(s.n_same_top == 0);  // argmax 2 vs 0
  CHECK(s.count == 1);

  // A model against its own rows: KL ~ 0 and the same top token every time.
  moe::KldSums self;
  std::vector<float> logits(97);
  for (int t2 = 0; t2 < 50; ++t2) {
    for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(std::sin(0.37 * i * (t2 + 1)) * 5);
    std::vector<uint16_t> r(static_cast<size_t>(moe::log_prob_row_u16(97)));
    moe::encode_log_probs(logits.data(), 97, t2, r.data());
    moe::add_kld_token(logits.data(), 97, r.data(), t2, self);
  }
  const moe::KldSummary sum = moe::summarize(self);
  CHECK(sum.kld.mean < 1e-6);
  CHECK(sum.same_top.mean == 1.0);
  CHECK(sum.ppl_ratio.mean == doctest::Approx(1.0).epsilon(1e-4));
}

TEST_CASE("perplexity: percentiles and median") {
  const std::vector<float> v = {1, 2, 3, 4, 5};
  CHECK(moe::percentile(v, 0.0f) == 1);
  CHECK(moe::percentile(v, 1.0f) == 5);
  CHECK(moe::percentile(v, 0.5f) == doctest::Approx(3));
  CHECK(moe::percentile(v, 0.9f) == doctest::Approx(4.6));  // 0.9 * 4 = 3.6: 0.4*4 + 0.6*5
  CHECK(moe::median(v) == 3);
  CHECK(moe::median({1, 2, 3, 4}) == doctest::Approx(2.5));
}

// ---- the tool against llama-perplexity --------------------------------------

// Within 0.5% of llama.cpp is the target for the float32 models (the
// tool's arithmetic is llama.cpp's; the forward pass matches to ~1e-6). The
// quantized random-weight ones are bug catchers only (issue 20): their
// prompt products keep ggml's integers but not its float order, and these
// chaotic models turn that into per-chunk PPL differences of a few percent;
// they are held to 6%. The trained model's quantized PPL is held to 0.3%
// (model_llama_agreement_test.cpp).
static double tolerance(const std::string& model) { return model.find(".f32.") != std::string::npos ? 0.005 : 0.06; }

static void check_close(double ours, double want, const std::string& model) {
  CHECK(rel_diff(ours, want) < tolerance(model));
}

TEST_CASE("moe-perplexity matches llama-perplexity on the fixture models") {
  const Json ref = reference();
  const int n_ctx = ref["n_ctx"];
  for (const auto& [name, r] : ref["perplexity"].items()) {
    const std::string model = moe::test::shared_fixture("models/" + name);
    if (model.empty()) return moe::test::skip("fixture models/" + name + " absent");
    CAPTURE(name);
    const auto res = run_command({tool(), "-m", model, "-f", text_file(), "-c", std::to_string(n_ctx), "-t", "2"});
    CAPTURE(res.err);
    REQUIRE(res.exit_code == 0);
    const PplOutput out = parse_ppl(res.out);
    const std::vector<double> want = r["chunks"];
    REQUIRE(out.chunks.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      CAPTURE(i);
      check_close(out.chunks[i], want[i], name);
    }
    REQUIRE(out.has_final);
    check_close(out.ppl, r["ppl"], name);
    check_close(out.unc, r["ppl_uncertainty"], name);
  }
}

TEST_CASE("moe-perplexity KL divergence matches llama-perplexity") {
  const Json ref = reference();
  const Json& kl = ref["kl_divergence"];
  const std::string base_model = moe::test::shared_fixture("models/" + kl["base"].get<std::string>());
  const std::string q_model = moe::test::shared_fixture("models/" + kl["model"].get<std::string>());
  if (base_model.empty() || q_model.empty()) return moe::test::skip("KL fixture models absent");
  const std::string base_file = moe::test::temp_dir() + "/base.kld";
  const int n_ctx = ref["n_ctx"];

  // Writing the base file also computes the base's PPL, which must still match.
  auto res = run_command({tool(), "-m", base_model, "-f", text_file(), "-c", std::to_string(n_ctx),
                          "--kl-divergence-base", base_file});
  CAPTURE(res.err);
  REQUIRE(res.exit_code == 0);
  CHECK(rel_diff(parse_ppl(res.out).ppl, ref["perplexity"][kl["base"].get<std::string>()]["ppl"]) < 0.005);
  CHECK_FALSE(std::filesystem::exists(base_file + ".tmp"));

  // The file has llama.cpp's layout: same size, header, tokens, and per chunk
  // a first row with nearly the same scale, floor and top token.
  const Json& lf = kl["base_file"];
  CHECK(std::filesystem::file_size(base_file) == lf["size"].get<uint64_t>());
  {
    moe::KldBaseReader r(base_file);
    CHECK(r.n_ctx() == lf["n_ctx"].get<int>());
    CHECK(r.n_vocab() == lf["n_vocab"].get<int>());
    REQUIRE(r.n_chunk() == lf["n_chunk"].get<int>());
    uint64_t h = 0xcbf29ce484222325ull;
    const auto* p = reinterpret_cast<const uint8_t*>(r.tokens().data());
    for (size_t i = 0; i < r.tokens().size() * 4; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    char hex[17];
    std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
    CHECK(std::string(hex) == lf["tokens_fnv1a64"].get<std::string>());
    std::vector<uint16_t> rows;
    for (int c = 0; c < r.n_chunk(); ++c) {
      CAPTURE(c);
      r.read_chunk(rows);
      float header[2];
      std::memcpy(header, rows.data(), sizeof(header));
      const Json& want = lf["first_row_of_chunk"][c];
      CHECK(header[0] == doctest::Approx(want["scale"].get<double>()).epsilon(1e-3));
      CHECK(header[1] == doctest::Approx(want["min_log_prob"].get<double>()).epsilon(1e-3));
      const uint16_t* codes = rows.data() + 4;
      CHECK(std::max_element(codes, codes + r.n_vocab()) - codes == want["argmax"].get<int>());
    }
  }

  res = run_command({tool(), "-m", q_model, "--kl-divergence-base", base_file, "--kl-divergence"});
  CAPTURE(res.out);
  REQUIRE(res.exit_code == 0);
  // The base side is float32 (tight); Q is Q4_K_M (see tolerance()).
  const std::string qn = kl["model"];
  const Json& st = kl["stats"];
  double v = 0, u = 0;
  REQUIRE(parse_stat(res.out, R"(Mean PPL\(Q\) +)", v, u));
  check_close(v, st["ppl_q"][0], qn);
  REQUIRE(parse_stat(res.out, R"(Mean PPL\(base\) +)", v, u));
  CHECK(rel_diff(v, st["ppl_base"][0]) < 0.005);
  REQUIRE(parse_stat(res.out, R"(Mean ln\(PPL\(Q\)/PPL\(base\)\) +)", v, u));
  CHECK(std::fabs(v - st["ln_ppl_ratio"][0].get<double>()) < tolerance(qn));
  REQUIRE(parse_stat(res.out, R"(Mean PPL\(Q\)/PPL\(base\) +)", v, u));
  check_close(v, st["ppl_ratio"][0], qn);
  REQUIRE(parse_stat(res.out, "Mean    KLD", v, u));
  // Q is a random-weight model: its logits differ from llama.cpp's by float
  // order (quantized products, chunked attention with fused multiply-adds),
  // which this model amplifies (measured 0.66% in KLD, 5 tokens of top p).
  CHECK(rel_diff(v, st["kld"][0]) < 0.01);
  CHECK(rel_diff(u, st["kld"][1]) < 0.05);
  std::smatch m;
  REQUIRE(std::regex_search(res.out, m, std::regex(R"(Same top p: +(\S+) ± +(\S+) %)")));
  // Percent of the 441 scored tokens: one token is 0.23 points.
  CHECK(std::fabs(std::stod(m[1]) - st["same_top_p_percent"][0].get<double>()) < 1.6);
  // RMS Δp is carried by the few tokens whose probability is not tiny, so it
  // moves most with Q's small differences: a loose bound.
  REQUIRE(std::regex_search(res.out, m, std::regex(R"(RMS Δp    : +(\S+) ± +(\S+) %)")));
  CHECK(std::fabs(std::stod(m[1]) - st["rms_p_diff_percent"][0].get<double>()) < 0.25);
}

TEST_CASE("moe-perplexity errors") {
  const Json ref = reference();
  const std::string model = moe::test::shared_fixture("models/" + ref["too_short"]["model"].get<std::string>());
  if (model.empty()) return moe::test::skip("fixture model absent");
  const std::string dir = moe::test::temp_dir();

  SUBCASE("text shorter than two chunks: llama.cpp's message") {
    const std::string shortf = dir + "/short.txt";
    std::ofstream(shortf) << ref["too_short"]["text"].get<std::string>();
    const auto res = run_command({tool(), "-m", model, "-f", shortf, "-c", std::to_string(ref["n_ctx"].get<int>())});
    CHECK(res.exit_code != 0);
    for (const auto& line : ref["too_short"]["messages"]) {
      CAPTURE(res.err);
      CHECK(res.err.find(line.get<std::string>()) != std::string::npos);
    }
  }
  SUBCASE("missing text file") {
    const auto res = run_command({tool(), "-m", model, "-f", dir + "/nope.txt"});
    CHECK(res.exit_code != 0);
    CHECK(res.err.find("nope.txt") != std::string::npos);
  }
  SUBCASE("missing model file") {
    const auto res = run_command({tool(), "-m", dir + "/nope.gguf", "-f", text_file()});
    CHECK(res.exit_code != 0);
    CHECK(res.err.find("nope.gguf") != std::string::npos);
  }
  SUBCASE("KL mode without a base file, or with a file that is not one") {
    auto res = run_command({tool(), "-m", model, "--kl-divergence"});
    CHECK(res.exit_code != 0);
    CHECK(res.err.find("log probabilities of the base model") != std::string::npos);
    res = run_command({tool(), "-m", model, "--kl-divergence", "--kl-divergence-base", text_file()});
    CHECK(res.exit_code != 0);
    CHECK(res.err.find("does not look like a file containing log-probabilities") != std::string::npos);
    const std::string missing = dir + "/missing.kld";
    res = run_command({tool(), "-m", model, "--kl-divergence", "--kl-divergence-base", missing});
    CHECK(res.exit_code != 0);
    CHECK(res.err.find("missing.kld") != std::string::npos);
  }
  SUBCASE("truncated base file") {
    const std::string base = dir + "/t.kld";
    auto res = run_command({tool(), "-m", model, "-f", text_file(), "-c", "128", "--chunks", "2",
                            "--kl-divergence-base", base});
    REQUIRE(res.exit_code == 0);
    std::filesystem::resize_file(base, std::filesystem::file_size(base) - 100);
    res = run_command({tool(), "-m", model, "--kl-divergence", "--kl-divergence-base", base});
    CHECK(res.exit_code != 0);
    CHECK(res.err.find("expected") != std::string::npos);
  }
}

// DeepSeek-V4 files (the reference test above compares their PPL with
// llama-perplexity's): a base file written from tiny-dsv4.f32 reads back as
// the same distributions, the quantized file's divergence from it is small
// but not zero, and --record-expert-stats counts every token's choices.
TEST_CASE("moe-perplexity on deepseek4 files: KL against a V4 base, routing statistics") {
  const std::string f32 = moe::test::shared_fixture("models/tiny-dsv4.f32.gguf");
  const std::string q8 = moe::test::shared_fixture("models/tiny-dsv4.Q8_0.gguf");
  if (f32.empty() || q8.empty()) return moe::test::skip("tiny-dsv4 fixtures absent");
  const std::string base = moe::test::temp_dir() + "/v4.kld";
  auto res = run_command({tool(), "-m", f32, "-f", text_file(), "-c", "128", "-t", "2", "--kl-divergence-base", base});
  CAPTURE(res.err);
  REQUIRE(res.exit_code == 0);
  const double base_ppl = parse_ppl(res.out).ppl;

  double v = 0, u = 0;
  std::smatch m;
  res = run_command({tool(), "-m", f32, "--kl-divergence-base", base, "--kl-divergence", "-t", "2"});
  REQUIRE(res.exit_code == 0);
  // (PPL(base) is read back from the file's 16-bit log-probabilities, which
  // round this random model's extreme ones: llama.cpp's also differs.)
  REQUIRE(parse_stat(res.out, R"(Mean PPL\(Q\) +)", v, u));
  CHECK(rel_diff(v, base_ppl) < 1e-4);
  REQUIRE(parse_stat(res.out, "Mean    KLD", v, u));
  CHECK(v < 1e-6);
  REQUIRE(std::regex_search(res.out, m, std::regex(R"(Same top p: +(\S+) ± +(\S+) %)")));
  CHECK(std::stod(m[1]) == doctest::Approx(100.0));

  res = run_command({tool(), "-m", q8, "--kl-divergence-base", base, "--kl-divergence", "-t", "2"});
  REQUIRE(res.exit_code == 0);
  REQUIRE(parse_stat(res.out, "Mean    KLD", v, u));
  CHECK(v > 1e-4);  // Q8_0 rounding, which this random model amplifies
  CHECK(v < 0.1);
  REQUIRE(std::regex_search(res.out, m, std::regex(R"(Same top p: +(\S+) ± +(\S+) %)")));
  CHECK(std::stod(m[1]) > 80.0);

  // Routing statistics: every token of every chunk went through each layer's top-k.
  const std::string stats_file = moe::test::temp_dir() + "/v4-stats.json";
  res = run_command({tool(), "-m", f32, "-f", text_file(), "-c", "128", "--chunks", "2", "-t", "2",
                     "--record-expert-stats", stats_file});
  REQUIRE_MESSAGE(res.exit_code == 0, res.err);
  const moe::ExpertStats stats = moe::ExpertStats::read(stats_file);
  CHECK(stats.tokens == 256);
  REQUIRE(stats.n_layers == 4);
  for (int64_t il = 0; il < stats.n_layers; ++il) {
    uint64_t sum = 0;
    for (int64_t e = 0; e < stats.n_experts; ++e) sum += stats.at(il, e);
    CHECK(sum == stats.tokens * static_cast<uint64_t>(stats.top_k));
  }
}
