// The latent cache as `moe` users meet it: -c 0 fitted to memory, and a
// saved prompt cache reused by the next run (--prompt-cache).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "test_util.h"

using namespace moe;
using nlohmann::json;

namespace {
const std::string kDefaultModel = std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf";
std::string moe_bin() { return test::bin_dir() + "/moe"; }
}  // namespace

TEST_CASE("moe -c 0: the model's context when its cache fits, said in one line") {
  const auto r = test::run_command({moe_bin(), "-m", test::local_fixture("tiny-dsv3.Q4_K_M.gguf"), "-c", "0", "-p", "Hi",
                                    "-n", "2", "-t", "2"});
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.err.find("-c 0: context 163840, the model's") != std::string::npos);
}

TEST_CASE("moe --prompt-cache: the second run evaluates only the new suffix, with the same output, and bad files are refused") {
  const std::string dir = test::temp_dir(), cache = dir + "/ruth.cache";
  const std::string base = "And Ruth said, Intreat me not to leave thee, or to return from following after thee";
  auto run = [&](const std::string& prompt, std::vector<std::string> extra) {
    std::vector<std::string> argv = {moe_bin(), "-m", kDefaultModel, "-p", prompt, "-n", "16", "--temp", "0",
                                     "-t", "2", "--json", "-q"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return test::run_command(argv);
  };
  const auto plain = run(base + ": for whither", {});
  REQUIRE(plain.exit_code == 0);
  const auto first = run(base, {"--prompt-cache", cache});
  REQUIRE_MESSAGE(first.exit_code == 0, first.err);
  CHECK(json::parse(first.out).at("prompt_tokens_cached") == 0);
  const auto second = run(base + ": for whither", {"--prompt-cache", cache});
  REQUIRE_MESSAGE(second.exit_code == 0, second.err);
  const json a = json::parse(plain.out), b = json::parse(second.out);
  const int cached = b.at("prompt_tokens_cached");
  CHECK(cached >= 15);
  CHECK(b.at("prompt_tokens").get<int>() + cached == a.at("prompt_tokens").get<int>());
  CHECK(b.at("text") == a.at("text"));
  // The loaded prefix counts for the repeat penalty as an evaluated one does.
  const auto plain_pen = run(base + ": for whither", {"--repeat-penalty", "1.5"});
  const auto cached_pen = run(base + ": for whither", {"--repeat-penalty", "1.5", "--prompt-cache", cache,
                                                        "--prompt-cache-ro"});
  REQUIRE(plain_pen.exit_code == 0);
  REQUIRE(cached_pen.exit_code == 0);
  CHECK(json::parse(cached_pen.out).at("prompt_tokens_cached").get<int>() >= 15);
  CHECK(json::parse(cached_pen.out).at("text") == json::parse(plain_pen.out).at("text"));
  // -ro reads and does not write; another model's file and a cut file are errors.
  const auto size_before = test::read_file(cache).size();
  CHECK(run("Who", {"--prompt-cache", cache, "--prompt-cache-ro"}).exit_code == 0);
  CHECK(test::read_file(cache).size() == size_before);
  const auto foreign = test::run_command({moe_bin(), "-m", test::local_fixture("tiny-dsv3.Q4_K_M.gguf"), "-p", "x", "-n",
                                          "2", "--prompt-cache", cache, "-t", "2"});
  CHECK(foreign.exit_code != 0);
  CHECK(foreign.err.find("was saved for model") != std::string::npos);
  const auto bytes = test::read_file(cache);
  test::write_file(dir + "/cut.cache", bytes.data(), bytes.size() / 2);
  const auto cut = run(base, {"--prompt-cache", dir + "/cut.cache"});
  CHECK(cut.exit_code != 0);
  CHECK(cut.err.find("prompt cache") != std::string::npos);
}

// DeepSeek-V3.2: the saved rows carry the index keys, so the loaded prefix
// chooses and attends as the evaluated one (the prompt is longer than the
// indexer's top_k of 16, so the choice matters).
TEST_CASE("moe --prompt-cache on DeepSeek-V3.2: the index keys are saved and loaded with the latent rows") {
  const std::string model = test::shared_fixture("models/tiny-dsv32.f32.gguf");
  if (model.empty()) return test::skip("tiny-dsv32.f32 fixture not found");
  const std::string cache = test::temp_dir() + "/v32.cache";
  const std::string base = "The quick brown fox jumps over the lazy dog. DeepSeek-V3 routes 1234 tokens to experts";
  auto run = [&](const std::string& prompt, std::vector<std::string> extra) {
    std::vector<std::string> argv = {moe_bin(), "-m", model, "-p", prompt, "-n", "12", "--temp", "0", "-t", "2",
                                     "--json", "-q"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return test::run_command(argv);
  };
  const auto plain = run(base + "; and more", {});
  REQUIRE_MESSAGE(plain.exit_code == 0, plain.err);
  const auto first = run(base, {"--prompt-cache", cache});
  REQUIRE_MESSAGE(first.exit_code == 0, first.err);
  const auto second = run(base + "; and more", {"--prompt-cache", cache});
  REQUIRE_MESSAGE(second.exit_code == 0, second.err);
  const json a = json::parse(plain.out), b = json::parse(second.out);
  CHECK(b.at("prompt_tokens_cached").get<int>() > 16);
  CHECK(b.at("text") == a.at("text"));
}
