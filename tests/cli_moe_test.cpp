// The `moe` executable end to end: greedy generation streams the same text
// the library computes, timings on stderr, clear errors and exit codes.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <cctype>

#include "model/deepseek2.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace moe;

namespace {
std::string moe_bin() { return test::bin_dir() + "/moe"; }
}  // namespace

TEST_CASE("moe: -p Hello -n 16 --temp 0 streams the greedy continuation and exits 0") {
  const std::string model_path = test::local_fixture("tiny-dsv3.Q4_K_M.gguf");
  const auto r = test::run_command({moe_bin(), "-m", model_path, "-p", "Hello", "-n", "16", "--temp", "0", "-t", "2"});
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.signal == 0);
  CHECK(r.err.find("tok/s") != std::string::npos);
  CHECK(r.err.find("generation 16 tokens") != std::string::npos);

  // The same 16 greedy tokens, computed through the library.
  auto model = Deepseek2Model::load(model_path);
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  std::vector<int32_t> prompt = tok.encode("Hello", true, true);
  Deepseek2Session s(*model, 64, 64, 1);
  std::vector<float> logits(static_cast<size_t>(model->config().vocab_size));
  s.forward(prompt.data(), static_cast<int64_t>(prompt.size()), logits.data(), false);
  std::vector<int32_t> gen;
  for (int i = 0; i < 16; ++i) {
    int32_t best = 0;
    for (int32_t v = 1; v < model->config().vocab_size; ++v)
      if (logits[size_t(v)] > logits[size_t(best)]) best = v;
    if (tok.is_eog(best)) break;
    gen.push_back(best);
    s.forward(&best, 1, logits.data(), false);
  }
  // Streaming never splits a character; invalid bytes become U+FFFD.
  StreamDecoder dec(tok, /*special=*/false, /*at_start=*/false);
  std::string expected = "Hello";
  for (int32_t t : gen) expected += dec.push(t);
  expected += dec.flush();
  CHECK(r.out == expected + "\n");
}

TEST_CASE("moe: same seed, same text, and the sampling flags are accepted") {
  const std::string model_path = test::local_fixture("tiny-dsv3.Q4_K_M.gguf");
  const std::vector<std::string> args = {moe_bin(), "-m", model_path, "-p", "The", "-n", "12", "-s", "42", "--temp",
                                         "0.9", "--top-k", "20", "--top-p", "0.9", "--min-p", "0.02",
                                         "--repeat-penalty", "1.1", "--no-display-prompt"};
  const auto a = test::run_command(args), b = test::run_command(args);
  REQUIRE(a.exit_code == 0);
  CHECK(a.out == b.out);
  CHECK(a.out.rfind("The", 0) != 0);  // prompt not echoed
}

TEST_CASE("moe: bad input gives a clear error and exit code 1") {
  const std::string model_path = test::local_fixture("tiny-dsv3.Q4_K_M.gguf");
  SUBCASE("prompt longer than the context") {
    const auto r = test::run_command({moe_bin(), "-m", model_path, "-p", std::string(400, 'x') + " y z", "-c", "16"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("longer than the context") != std::string::npos);
  }
  SUBCASE("missing model file") {
    const auto r = test::run_command({moe_bin(), "-m", "/nonexistent/m.gguf", "-p", "hi"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("/nonexistent/m.gguf") != std::string::npos);
  }
  SUBCASE("not a GGUF file") {
    const std::string p = test::temp_dir() + "/junk.gguf";
    test::write_file(p, "hello world, not gguf", 21);
    const auto r = test::run_command({moe_bin(), "-m", p, "-p", "hi"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("not a GGUF file") != std::string::npos);
  }
  SUBCASE("a vocabulary-only file is not a model") {
    const std::string vocab = test::shared_fixture("tokenizer/deepseek-v3-vocab.gguf");
    if (vocab.empty()) return test::skip("deepseek-v3-vocab.gguf not found");
    const auto r = test::run_command({moe_bin(), "-m", vocab, "-p", "hi"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("token_embd.weight") != std::string::npos);
  }
}

TEST_CASE("moe: --stop ends the answer before the stop string, and --json reports it") {
  const std::string model_path = test::local_fixture("tiny-dsv3.Q4_K_M.gguf");
  const std::vector<std::string> base = {moe_bin(), "-m", model_path, "-p", "Hello", "-n", "16", "--temp", "0",
                                         "-t", "2", "--no-display-prompt"};
  const auto full = test::run_command(base);
  REQUIRE(full.exit_code == 0);
  const std::string text = full.out.substr(0, full.out.size() - 1);  // the greedy answer, without the final newline
  // A stop string from the middle of that answer: three ASCII letters.
  size_t at = std::string::npos;
  for (size_t i = 1; i + 3 <= text.size() && at == std::string::npos; ++i)
    if (isalpha(static_cast<unsigned char>(text[i])) && isalpha(static_cast<unsigned char>(text[i + 1])) &&
        isalpha(static_cast<unsigned char>(text[i + 2])))
      at = i;
  REQUIRE(at != std::string::npos);
  const std::string stop = text.substr(at, 3);
  const std::string before = text.substr(0, text.find(stop));

  auto args = base;
  args.insert(args.end(), {"--stop", "zzzz-never", "--stop", stop});
  const auto cut = test::run_command(args);
  REQUIRE(cut.exit_code == 0);
  CHECK(cut.out == before + "\n");
  CHECK(cut.err.find("stop: stop string") != std::string::npos);

  args.push_back("--json");
  const auto js = test::run_command(args);
  REQUIRE(js.exit_code == 0);
  const auto j = nlohmann::json::parse(js.out);
  CHECK(j.at("text") == before);
  CHECK(j.at("finish_reason") == "stop");
  auto model = Deepseek2Model::load(model_path);
  CHECK(j.at("prompt_tokens") == Tokenizer::from_gguf(model->file()).encode("Hello", true, true).size());
  CHECK(j.at("generated_tokens").get<int>() < 16);
  CHECK(j.at("timings").at("generation_s").get<double>() >= 0);

  // Without a stop string the JSON text is the streamed answer, and --quiet drops the timing line.
  auto plain = base;
  plain.insert(plain.end(), {"--json", "--quiet"});
  const auto pj = test::run_command(plain);
  REQUIRE(pj.exit_code == 0);
  const auto k = nlohmann::json::parse(pj.out);
  CHECK(k.at("text") == text);
  CHECK(k.at("finish_reason") == "length");
  CHECK(k.at("generated_tokens") == 16);
  CHECK(pj.err.find("tok/s") == std::string::npos);
}
