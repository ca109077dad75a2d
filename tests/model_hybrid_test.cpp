// The hybrid path without a GPU: a second CPU backend stands in for the
// device (its own threads, its own copies of the weights placed on it), the
// routed experts are split between it and the host by ExpertPlacement, and
// the host computes its share from the file mapping on another thread. The
// logits must be bit-identical to the single-backend run at every split, on
// every fixture and on the trained default model.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "model/deepseek2.h"
#include "runtime/backend_registry.h"
#include "runtime/expert_stats.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace moe;

namespace {

const std::string kDefaultModel = std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf";

// Every model the test runs: the committed files, then the shared fixtures.
std::vector<std::string> models() {
  std::vector<std::string> out = {kDefaultModel, test::local_fixture("tiny-dsv3.Q4_K_M.gguf")};
  for (const char* f : {"tiny-dsv3.f32", "tiny-dsv3.Q8_0", "tiny-dsv3.Q4_0", "tiny-dsv3.Q6_K", "tiny-dsv2lite.Q4_K_M",
                        "tiny-dsv2lite.F16", "tiny-dsv2.f32"}) {
    const std::string p = test::shared_fixture(std::string("models/") + f + ".gguf");
    if (!p.empty()) out.push_back(p);
  }
  return out;
}

// A prompt of 19 tokens (two steps of 16 and 3), then 5 tokens one at a time:
// the logits of every position, in one vector.
std::vector<float> run(const Deepseek2Model& model, const SessionOptions& o) {
  return test::prompt_then_decode_logits<Deepseek2Session>(model, o, 19);
}

SessionOptions options(const std::string& device) {
  SessionOptions o;
  o.n_ctx = 32;
  o.n_batch = 16;
  o.backends.device = device;
  o.backends.n_threads = 2;
  o.backends.device_threads = 2;
  return o;
}

// Routing counts of the default model over the held-out book of Ruth.
ExpertStats kjv_stats(const Deepseek2Model& model) {
  const Tokenizer tok = Tokenizer::from_gguf(model.file());
  std::ifstream in(test::local_fixture("kjv-heldout-ruth.txt"));
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<int32_t> ids = tok.encode(ss.str(), true, false);
  ids.resize(std::min<size_t>(ids.size(), 512));
  Deepseek2Session s(model, 512, 128, 2);
  std::vector<float> logits(size_t(model.config().vocab_size));
  s.forward(ids.data(), static_cast<int64_t>(ids.size()), logits.data(), false);
  return s.expert_stats();
}

}  // namespace

TEST_CASE("hybrid: the CPU standing in for a device gives bit-identical logits at every split") {
  for (const std::string& path : models()) {
    CAPTURE(path);
    auto model = Deepseek2Model::load(path);
    const std::vector<float> ref = run(*model, options("cpu"));
    const int64_t n_moe_layers = model->config().num_hidden_layers - model->config().first_k_dense_replace;

    const SessionOptions all = options("cpu-device");
    ExpertPlacement all_plan;
    {
      Deepseek2Session probe(*model, all);
      all_plan = probe.placement();
      REQUIRE(all_plan.device_active);
      CHECK(all_plan.host.n_experts == 0);
    }
    for (const test::HybridSplit& split :
         test::hybrid_splits(all, all_plan, model->config().first_k_dense_replace + n_moe_layers / 2)) {
      CAPTURE(split.name);
      Deepseek2Session probe(*model, split.o);
      test::check_hybrid_split(split, probe.placement());
      CHECK(test::same_bits(run(*model, split.o), ref));
    }
  }
}

// Routed experts repacked at load for the host's kernels
// (model/repacked_tensors.h) go to a device in the file's layout: all on the
// device is the file's run bit for bit; all on the host is the repacked
// model's own run bit for bit.
TEST_CASE("hybrid: a repacked model's experts reach the device in the file's layout") {
  if (!host_reads_repacked_weights()) return test::skip("this CPU has no kernel for repacked experts (AVX-512 VNNI)");
  for (const std::string& path : {kDefaultModel, test::local_fixture("tiny-dsv3.Q4_K_M.gguf")}) {
    CAPTURE(path);
    auto file = Deepseek2Model::load(path);
    auto repacked = Deepseek2Model::load(path, /*map=*/false, /*repack=*/true);
    REQUIRE(repacked->repacked().count() > 0);
    CHECK(repacked->fingerprint() == file->fingerprint());  // saved caches load across layouts
    const std::vector<float> ref = run(*file, options("cpu"));
    const std::vector<float> own = run(*repacked, options("cpu"));
    const int64_t V = file->config().vocab_size;
    const test::LogitAgreement agree = test::logit_agreement(ref.data(), own.data(), int64_t(ref.size()) / V, V);
    CHECK(agree.top1 >= 0.95);
    CHECK(agree.mean_kl <= 1e-3);
    CHECK(test::same_bits(run(*repacked, options("cpu-device")), ref));
    // --cpu-moe: the host computes the experts on its repacked rows (not
    // the file's bits), the device the rest in the file's layout (so not
    // the all-host repacked run's bits either: attention and shared
    // experts are repacked there too); both agree with the file's run.
    SessionOptions none = options("cpu-device");
    none.placement.cpu_moe = true;
    const std::vector<float> split = run(*repacked, none);
    CHECK(!test::same_bits(split, ref));
    const test::LogitAgreement split_agree = test::logit_agreement(ref.data(), split.data(), int64_t(ref.size()) / V, V);
    CHECK(split_agree.top1 >= 0.95);
    CHECK(split_agree.mean_kl <= 1e-3);
  }
}

TEST_CASE("hybrid: statistics recorded on KJV text change which experts a budget keeps, and the logits do not change") {
  auto model = Deepseek2Model::load(kDefaultModel);
  const ExpertStats stats = kjv_stats(*model);
  const Deepseek2Config& c = model->config();
  CHECK(stats.tokens > 100);
  for (int64_t il = c.first_k_dense_replace; il < c.num_hidden_layers; ++il) {
    uint64_t sum = 0;
    for (int64_t e = 0; e < stats.n_experts; ++e) sum += stats.at(il, e);
    CHECK(sum == stats.tokens * uint64_t(c.num_experts_per_tok));
  }
  const std::string path = test::temp_dir() + "/kjv-stats.json";
  stats.write(path);

  SessionOptions uniform = options("cpu-device");
  int64_t half_budget = 0;
  {
    Deepseek2Session probe(*model, uniform);
    const ExpertPlacement& p = probe.placement();
    half_budget = int64_t(p.device.every_token + p.device.kv + p.device.experts / 2);
  }
  uniform.backends.device_mem = half_budget;
  SessionOptions ranked = uniform;
  ranked.placement.expert_stats_file = path;
  Deepseek2Session su(*model, uniform), sr(*model, ranked);
  const ExpertPlacement &pu = su.placement(), &pr = sr.placement();
  CHECK(pr.from_stats);
  CHECK(pu.device.n_experts == pr.device.n_experts);
  bool differs = false;
  for (int64_t il = 0; il < c.num_hidden_layers; ++il) differs |= pu.device_experts(il) != pr.device_experts(il);
  CHECK(differs);
  // The device holds the most used experts: the most chosen one is kept,
  // and the kept experts serve more of the routing than the uniform plan's.
  uint64_t kept_ranked = 0, kept_uniform = 0, best = 0;
  int64_t best_layer = -1, best_expert = -1;
  for (int64_t il = c.first_k_dense_replace; il < c.num_hidden_layers; ++il)
    for (int64_t e = 0; e < c.n_routed_experts; ++e) {
      const uint64_t n = stats.at(il, e);
      if (pr.on_device(il, e)) kept_ranked += n;
      if (pu.on_device(il, e)) kept_uniform += n;
      if (n > best) best = n, best_layer = il, best_expert = e;
    }
  CHECK(pr.on_device(best_layer, best_expert));
  CHECK(kept_ranked > kept_uniform);
  CHECK(test::same_bits(run(*model, ranked), run(*model, options("cpu"))));
}

TEST_CASE("hybrid: a device too small for the fixed weights falls back to the host, saying so") {
  auto model = Deepseek2Model::load(kDefaultModel);
  SessionOptions o = options("cpu-device");
  o.backends.device_mem = 1024;
  Deepseek2Session s(*model, o);
  CHECK_FALSE(s.placement().device_active);
  CHECK(s.placement().describe().find("cannot hold") != std::string::npos);
  CHECK(s.backends_description().find("CPU-device") == std::string::npos);
  CHECK(test::same_bits(run(*model, o), run(*model, options("cpu"))));
}

TEST_CASE("backends: an unknown or unavailable --device is a clear error") {
  auto model = Deepseek2Model::load(kDefaultModel);
  CHECK_THROWS_WITH_AS(Deepseek2Session(*model, options("tpu")), doctest::Contains("--device 'tpu'"), Error);
  CHECK_THROWS_WITH_AS(Deepseek2Session(*model, options("cuda")), doctest::Contains("CUDA"), Error);
}
