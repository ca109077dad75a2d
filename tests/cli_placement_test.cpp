// Expert placement from the command line: llama.cpp's spellings (-ncmoe,
// -cmoe, -ot), the plan printed at start and in --json, statistics recorded by
// one run and used by the next, the same text at every split, and clear
// errors for bad flags.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "runtime/expert_stats.h"
#include "test_util.h"

using namespace moe;

namespace {

const std::string kModel = std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf";

test::CommandResult moe_run(std::vector<std::string> extra) {
  std::vector<std::string> argv = {test::bin_dir() + "/moe", "-m", kModel, "-p", "And God said", "-n", "24", "--temp",
                                   "0", "-t", "1"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return test::run_command(argv);
}

}  // namespace

TEST_CASE("moe: the placement plan is printed at start, and the text is the same at every split") {
  const auto cpu = moe_run({});
  REQUIRE_MESSAGE(cpu.exit_code == 0, cpu.err);
  CHECK(cpu.err.find("moe: placement: everything on the CPU") != std::string::npos);

  const auto all = moe_run({"--device", "cpu-device"});
  REQUIRE_MESSAGE(all.exit_code == 0, all.err);
  CHECK(all.err.find("moe: placement: CPU-device holds") != std::string::npos);
  CHECK(all.err.find("routed experts 48 of 48") != std::string::npos);
  CHECK(all.out == cpu.out);

  for (const std::vector<std::string>& split :
       {std::vector<std::string>{"-cmoe"}, {"-ncmoe", "3"}, {"--n-cpu-moe=2"}, {"-ot", "blk\\.[12]\\.ffn_.*_exps=CPU"},
        {"--override-tensor", "exps=CPU"}, {"--gpu-mem", "3.5M"}}) {
    std::vector<std::string> args = {"--device", "cpu-device"};
    args.insert(args.end(), split.begin(), split.end());
    const auto r = moe_run(args);
    CAPTURE(split[0]);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    CHECK(r.err.find("moe: placement: CPU computes") != std::string::npos);
    CHECK(r.err.find("CPU computes 0 routed") == std::string::npos);
    CHECK(r.out == cpu.out);
  }
  const auto cmoe = moe_run({"--device", "cpu-device", "-cmoe"});
  CHECK(cmoe.err.find("routed experts 0 of 48") != std::string::npos);
  CHECK(cmoe.err.find("CPU computes 48 routed experts") != std::string::npos);
  const auto ncmoe = moe_run({"--device", "cpu-device", "-ncmoe", "3"});
  CHECK(ncmoe.err.find("layers 1-2 0/16, layer 3 16/16") != std::string::npos);

  // -q: no plan.
  const auto quiet = moe_run({"--device", "cpu-device", "-q"});
  CHECK(quiet.err.find("placement") == std::string::npos);
}

TEST_CASE("moe: --json carries the placement") {
  const auto r = moe_run({"--device", "cpu-device", "--gpu-mem", "3.5M", "--json"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const auto j = nlohmann::json::parse(r.out);
  REQUIRE(j.contains("placement"));
  CHECK(j["placement"]["device"] == "CPU-device");
  CHECK(j["placement"]["budget_bytes"] == 3670016);
  const int64_t on_device = j["placement"]["device_usage"]["routed_experts"];
  CHECK(on_device > 0);
  CHECK(on_device + j["placement"]["host_usage"]["routed_experts"].get<int64_t>() == 48);
  CHECK(j["placement"]["device_usage"]["every_token_bytes"].get<int64_t>() > 0);
  CHECK(j["placement"]["device_usage"]["kv_cache_bytes"].get<int64_t>() > 0);
}

TEST_CASE("moe: --record-expert-stats writes the routing counts, and --expert-stats plans from them") {
  const std::string dir = test::temp_dir(), stats = dir + "/stats.json";
  const auto rec = moe_run({"--record-expert-stats", stats});
  REQUIRE_MESSAGE(rec.exit_code == 0, rec.err);
  CHECK(rec.err.find("expert statistics written to " + stats) != std::string::npos);
  const ExpertStats s = ExpertStats::read(stats);
  CHECK(s.n_layers == 4);
  CHECK(s.n_experts == 16);
  CHECK(s.top_k == 2);
  CHECK(s.tokens > 24);  // the prompt and the generated tokens
  uint64_t layer1 = 0;
  for (int e = 0; e < 16; ++e) layer1 += s.at(1, e);
  CHECK(layer1 == s.tokens * 2);

  const auto used = moe_run({"--device", "cpu-device", "--gpu-mem", "3.5M", "--expert-stats", stats});
  REQUIRE_MESSAGE(used.exit_code == 0, used.err);
  CHECK(used.err.find("experts ranked by --expert-stats") != std::string::npos);
  CHECK(used.out == rec.out);

  // moe-perplexity and moe-bench record too.
  const auto ppl = test::run_command({test::bin_dir() + "/moe-perplexity", "-m", kModel, "-f",
                                      test::local_fixture("kjv-heldout-ruth.txt"), "-c", "128", "--chunks", "2", "-t",
                                      "1", "--record-expert-stats", stats});
  REQUIRE_MESSAGE(ppl.exit_code == 0, ppl.err);
  CHECK(ExpertStats::read(stats).tokens == 256);
}

TEST_CASE("moe: bad placement flags are clear errors") {
  struct Bad {
    std::vector<std::string> args;
    const char* message;
  };
  for (const Bad& b : {Bad{{"-ot", "attn_q_a=CPU", "--device", "cpu-device"}, "only routed expert tensors"},
                       Bad{{"-ot", "exps"}, "REGEX=BACKEND"},
                       Bad{{"-ot", "exps=CUDA0"}, "no device backend"},
                       Bad{{"--gpu-mem", "lots", "--device", "cpu-device"}, "'lots' is not a size"},
                       Bad{{"--expert-stats", "/nonexistent/stats.json"}, "/nonexistent/stats.json"},
                       Bad{{"--device", "cuda"}, "CUDA"}}) {
    CAPTURE(b.args[0]);
    const auto r = moe_run(b.args);
    CHECK(r.exit_code == 1);
    CHECK(r.signal == 0);
    CHECK_MESSAGE(r.err.find(b.message) != std::string::npos, r.err);
  }
}
