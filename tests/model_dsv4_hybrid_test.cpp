// DeepSeek-V4 on the hybrid path without a GPU: the CPU standing in for a
// device (its own threads, its own copies of everything every token uses
// and of the routed experts placed on it) and the host computing the other
// experts from the mapping, split by ExpertPlacement as for DeepSeek-V2/V3.
// The logits must be bit-identical to the CPU-only run at every split, and
// the routing statistics must count every token's choices.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "model/deepseek4.h"
#include "runtime/expert_stats.h"
#include "test_util.h"

using namespace moe;

namespace {

// The tiny V4 shape (window, CSA, HCA, CSA layers; a hash layer), random
// weights in f32 and with MXFP4 experts, and the fixtures where present.
std::vector<std::string> models() {
  const std::string dir = test::temp_dir() + "/dsv4-hybrid";
  std::vector<std::string> out;
  for (const char* type : {"F32", "MXFP4_MOE"}) {
    const std::string path = dir + "/v4." + type + ".gguf";
    if (!std::filesystem::exists(path))
      test::synth_from_config(test::tiny_dsv4_config(), dir, {"--type", type, "--seed", "3", "-o", path});
    out.push_back(path);
  }
  for (const char* f : {"tiny-dsv4.f32", "tiny-dsv4.Q8_0"}) {
    const std::string p = test::shared_fixture(std::string("models/") + f + ".gguf");
    if (!p.empty()) out.push_back(p);
  }
  return out;
}

SessionOptions options(const std::string& device) {
  SessionOptions o;
  o.n_ctx = 160;
  o.n_batch = 64;
  o.backends.device = device;
  o.backends.n_threads = 2;
  o.backends.device_threads = 2;
  return o;
}

// A prompt of 150 tokens in steps of 64 (past the window and one HCA
// block), then 5 tokens one at a time: every position's logits.
std::vector<float> run(const Deepseek4Model& model, const SessionOptions& o) {
  return test::prompt_then_decode_logits<Deepseek4Session>(model, o, 150);
}

}  // namespace

TEST_CASE("deepseek4 hybrid: the CPU standing in for a device gives bit-identical logits at every split") {
  for (const std::string& path : models()) {
    CAPTURE(path);
    auto model = Deepseek4Model::load(path);
    const std::vector<float> ref = run(*model, options("cpu"));
    const int64_t L = model->config().num_hidden_layers;

    const SessionOptions all = options("cpu-device");
    ExpertPlacement all_plan;
    {
      Deepseek4Session probe(*model, all);
      all_plan = probe.placement();
      REQUIRE(all_plan.device_active);
      CHECK(all_plan.host.n_experts == 0);
      CHECK(all_plan.device.n_experts == L * model->config().n_routed_experts);
      CHECK(all_plan.device.kv > 0);
      CHECK(probe.backends_description().find("CPU-device") != std::string::npos);
    }
    for (const test::HybridSplit& split : test::hybrid_splits(all, all_plan, L / 2)) {
      CAPTURE(split.name);
      Deepseek4Session probe(*model, split.o);
      const ExpertPlacement& p = probe.placement();
      test::check_hybrid_split(split, p);
      // The device holds what the plan gives it: every tensor each token
      // uses, and its experts.
      CHECK(probe.device_weight_bytes() == p.device.every_token + p.device.experts);
      CHECK(test::same_bits(run(*model, split.o), ref));
    }
  }
}

TEST_CASE("deepseek4 hybrid: routing statistics, and a statistics file decides what a budget keeps") {
  const std::string path = models().front();
  auto model = Deepseek4Model::load(path);
  const Deepseek4Config& c = model->config();
  Deepseek4Session s(*model, 160, 64, 2);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 150; ++i) prompt.push_back(static_cast<int32_t>((i * 53 + 5) % c.vocab_size));
  std::vector<float> logits(size_t(c.vocab_size));
  s.forward(prompt.data(), 150, logits.data(), false);
  const ExpertStats stats = s.expert_stats();
  CHECK(stats.tokens == 150);
  REQUIRE(stats.n_layers == c.num_hidden_layers);
  for (int64_t il = 0; il < stats.n_layers; ++il) {  // hash layers too: each token's top-k, counted
    uint64_t sum = 0;
    for (int64_t e = 0; e < stats.n_experts; ++e) sum += stats.at(il, e);
    CHECK(sum == stats.tokens * uint64_t(c.num_experts_per_tok));
  }
  const std::string file = test::temp_dir() + "/dsv4-stats.json";
  stats.write(file);
  SessionOptions ranked = options("cpu-device");
  ranked.placement.expert_stats_file = file;
  {
    Deepseek4Session probe(*model, ranked);
    ranked.backends.device_mem = int64_t(probe.placement().device.every_token + probe.placement().device.kv +
                                         probe.placement().device.experts / 2);
  }
  Deepseek4Session sr(*model, ranked);
  const ExpertPlacement& pr = sr.placement();
  CHECK(pr.from_stats);
  CHECK(pr.host.n_experts > 0);
  // The most chosen expert is one the device keeps.
  uint64_t best = 0;
  int64_t best_layer = -1, best_expert = -1;
  for (int64_t il = 0; il < c.num_hidden_layers; ++il)
    for (int64_t e = 0; e < c.n_routed_experts; ++e)
      if (stats.at(il, e) > best) best = stats.at(il, e), best_layer = il, best_expert = e;
  CHECK(pr.on_device(best_layer, best_expert));
  CHECK(test::same_bits(run(*model, ranked), run(*model, options("cpu"))));
}

TEST_CASE("deepseek4 hybrid: drafting with the MTP module on a device is refused at start") {
  const std::string dir = test::temp_dir() + "/dsv4-hybrid-mtp";
  nlohmann::json config = test::tiny_dsv4_config();
  config["compress_ratios"].push_back(0);
  config["num_nextn_predict_layers"] = 1;
  test::synth_from_config(config, dir, {"--type", "F32", "-o", dir + "/v4.gguf", "--mtp-companion", dir + "/v4-mtp.gguf"});
  auto model = Deepseek4Model::load(dir + "/v4.gguf");
  model->attach_mtp(dir + "/v4-mtp.gguf");
  SessionOptions cpu = options("cpu"), device = options("cpu-device");
  cpu.mtp = device.mtp = true;
  CHECK_NOTHROW(Deepseek4Session(*model, cpu));
  CHECK_THROWS_WITH_AS(Deepseek4Session(*model, device), doctest::Contains("on a device"), Error);
}
