// The `moe` executable end to end: greedy generation streams the same text
// the library computes, timings on stderr, clear errors and exit codes.
#include <doctest/doctest.h>

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

TEST_CASE("moe: same seed, same text; sampling flags are accepted") {
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
