// Context shift for MLA (InferenceSession::seq_drop, Backend::mla_kv_shift):
// positions enter the latent cache only through the rotated k_rope part,
// so dropping a range and turning the later rows' RoPE to their new
// positions gives, for a one-layer model (whose cached rows depend on
// their own token and position only), exactly the cache of a fresh
// evaluation of the kept tokens: the next logits must agree to 1e-4 in f32.
// With more layers the kept rows remember the dropped tokens through the
// layers below (as in llama.cpp's context shift); there the test checks
// that the shift changes the cache as it should and generation goes on.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "model/deepseek2.h"
#include "test_util.h"

using namespace moe;

namespace {

// A one-layer V3-shaped model (YaRN RoPE, q-LoRA) in f32, from the tiny
// fixture's config.
// v32: DeepSeek-V3.2's indexer too, choosing 16 positions.
std::string one_layer_model(const std::string& dir, bool v32 = false) {
  std::ifstream in(test::local_fixture("hf-tiny-dsv3-config.json"));
  nlohmann::json c = nlohmann::json::parse(in);
  c["num_hidden_layers"] = 1;
  c["first_k_dense_replace"] = 0;
  if (v32) {
    c["architectures"] = {"DeepseekV32ForCausalLM"};
    c["index_n_heads"] = 4;
    c["index_head_dim"] = 64;
    c["index_topk"] = 16;
  }
  const std::string cfg = dir + "/config-1layer.json", out = dir + (v32 ? "/one-layer-v32.f32.gguf" : "/one-layer.f32.gguf");
  const std::string text = c.dump();
  test::write_file(cfg, text.data(), text.size());
  const auto r = test::run_command({test::bin_dir() + "/moe-synth", "--config", cfg, "--type", "F32", "--seed", "3",
                                    "-o", out});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  return out;
}

std::vector<int32_t> random_tokens(std::mt19937& rng, int64_t n, int64_t n_vocab) {
  std::uniform_int_distribution<int32_t> d(3, static_cast<int32_t>(n_vocab) - 1);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = d(rng);
  return t;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}

}  // namespace

TEST_CASE("context shift: a one-layer model's shifted cache gives the logits of a fresh evaluation (f32, 1e-4)") {
  const auto model = Deepseek2Model::load(one_layer_model(test::temp_dir()));
  const int64_t V = model->config().vocab_size;
  std::mt19937 rng(9);
  for (LatentType type : {LatentType::kF32, LatentType::kBf16, LatentType::kF16, LatentType::kQ8_0}) {
    SessionOptions o;
    o.n_ctx = 256;
    o.n_batch = 32;
    o.cache_type = type;
    o.backends.n_threads = 2;
    Deepseek2Session a(*model, o);
    Deepseek2Session b(*model, o);
    // a: keep (12) dropped (70) rest (40), then shift the dropped range out;
    // b: keep rest, fresh. Then the same next tokens on both.
    const auto keep = random_tokens(rng, 12, V), drop = random_tokens(rng, 70, V), rest = random_tokens(rng, 40, V);
    const auto next = random_tokens(rng, 3, V);
    std::vector<float> la(static_cast<size_t>(3 * V)), lb(la.size()), junk(static_cast<size_t>(V));
    std::vector<int32_t> all = keep;
    all.insert(all.end(), drop.begin(), drop.end());
    all.insert(all.end(), rest.begin(), rest.end());
    a.forward(all.data(), static_cast<int64_t>(all.size()), junk.data(), false);
    a.seq_drop(0, 12, 82);
    CHECK(a.n_past() == 52);
    std::vector<int32_t> kept = keep;
    kept.insert(kept.end(), rest.begin(), rest.end());
    b.forward(kept.data(), static_cast<int64_t>(kept.size()), junk.data(), false);
    a.forward(next.data(), 3, la.data(), true);
    b.forward(next.data(), 3, lb.data(), true);
    const double d = max_abs_diff(la, lb);
    MESSAGE(std::string(latent_type_name(type)) << " cache: max |logit shifted - fresh| = " << d);
    // The other types round the shifted row again where a fresh one is
    // rounded once (measured: bf16 2.1e-3, f16 3.3e-4, q8_0 1.0e-2).
    CHECK(d <= (type == LatentType::kF32 ? 1e-4 : 2e-2));
    // Not shifting the RoPE (dropping by truncating and re-appending the
    // rows as they were) would leave the rest at its old positions: the
    // test must be able to tell.
    std::vector<float> lc(la.size());
    Deepseek2Session c(*model, o);
    c.forward(all.data(), static_cast<int64_t>(all.size()), junk.data(), false);
    c.forward(next.data(), 3, lc.data(), true);
    CHECK(max_abs_diff(lc, lb) > 100 * d + 1e-3);
  }
}

TEST_CASE("context shift: one-shot generation goes past the context with --context-shift, and stops without") {
  const std::string model = std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf";
  const std::vector<std::string> base = {test::bin_dir() + "/moe", "-m", model, "-p", "and Ruth said", "-c", "48",
                                         "-n", "150", "--ignore-eos", "--temp", "0", "-t", "2", "--json", "-q"};
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = base;
    argv.insert(argv.end(), extra.begin(), extra.end());
    const auto r = test::run_command(argv);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    return nlohmann::json::parse(r.out);
  };
  const auto stopped = run({});
  CHECK(stopped.at("finish_reason") == "context");
  CHECK(stopped.at("generated_tokens").get<int>() < 48);
  const auto shifted = run({"--context-shift", "--keep", "-1"});
  CHECK(shifted.at("finish_reason") == "length");
  CHECK(shifted.at("generated_tokens") == 150);
  // Up to the full context, the shifted run is the same run.
  const std::string a = stopped.at("text"), b = shifted.at("text");
  CHECK(b.substr(0, a.size()) == a);
  CHECK(b.size() > a.size() + 100);
}

// DeepSeek-V3.2: the index keys move and turn with the latent rows, so the
// indexer chooses among the kept positions as a fresh evaluation's does.
TEST_CASE("context shift: DeepSeek-V3.2's shifted index keys and cache give the logits of a fresh evaluation") {
  const auto model = Deepseek2Model::load(one_layer_model(test::temp_dir(), true));
  REQUIRE(model->config().has_indexer());
  const int64_t V = model->config().vocab_size;
  std::mt19937 rng(4);
  SessionOptions o;
  o.n_ctx = 256;
  o.n_batch = 32;
  o.backends.n_threads = 2;
  Deepseek2Session a(*model, o), b(*model, o), c(*model, o);
  const auto keep = random_tokens(rng, 12, V), drop = random_tokens(rng, 70, V), rest = random_tokens(rng, 40, V);
  const auto next = random_tokens(rng, 3, V);
  std::vector<float> la(static_cast<size_t>(3 * V)), lb(la.size()), lc(la.size()), junk(static_cast<size_t>(V));
  std::vector<int32_t> all = keep, kept = keep;
  all.insert(all.end(), drop.begin(), drop.end());
  all.insert(all.end(), rest.begin(), rest.end());
  kept.insert(kept.end(), rest.begin(), rest.end());
  a.forward(all.data(), static_cast<int64_t>(all.size()), junk.data(), false);
  a.seq_drop(0, 12, 82);
  b.forward(kept.data(), static_cast<int64_t>(kept.size()), junk.data(), false);
  c.forward(all.data(), static_cast<int64_t>(all.size()), junk.data(), false);
  a.forward(next.data(), 3, la.data(), true);
  b.forward(next.data(), 3, lb.data(), true);
  c.forward(next.data(), 3, lc.data(), true);
  const double d = max_abs_diff(la, lb);
  MESSAGE("V3.2: max |logit shifted - fresh| = " << d);
  CHECK(d <= 1e-4);
  CHECK(max_abs_diff(lc, lb) > 100 * d + 1e-3);  // not shifting would show
}
