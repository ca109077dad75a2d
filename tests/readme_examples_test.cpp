// The README's examples work as written: every `build/...` line of its sh
// blocks runs (in a scratch directory holding files under the names the
// README uses: model.gguf is the default model, prompt.txt, prompts.jsonl,
// text.txt, HF_DIR, ...) and exits 0. Blocks the README marks as "not run by
// the tests" (gigabytes, minutes) are left out.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "test_util.h"

namespace fs = std::filesystem;

namespace {

const fs::path kRoot = fs::path(MOE_TEST_FIXTURES_DIR).parent_path().parent_path();

std::vector<std::string> readme_commands() {
  std::ifstream in(kRoot / "README.md");
  std::vector<std::string> out;
  std::string line, previous_text;
  bool in_sh = false, skip_block = false;
  const std::regex comment(R"(\s+#\s.*$)");
  while (std::getline(in, line)) {
    if (!in_sh && line == "```sh") {
      in_sh = true;
      skip_block = previous_text.find("not run by the tests") != std::string::npos;
      continue;
    }
    if (in_sh && line == "```") {
      in_sh = false;
      continue;
    }
    if (!in_sh) {
      if (!line.empty()) previous_text = line;
      continue;
    }
    if (!skip_block && line.rfind("build/", 0) == 0) out.push_back(std::regex_replace(line, comment, ""));
  }
  return out;
}

void write_text(const std::string& path, const std::string& text) { moe::test::write_file(path, text.data(), text.size()); }

}  // namespace

TEST_CASE("README: every example command runs as written") {
  const std::vector<std::string> commands = readme_commands();
  REQUIRE(commands.size() >= 15);
  const std::string dir = moe::test::temp_dir();
  const std::string model = std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf";
  fs::create_symlink(model, dir + "/model.gguf");
  write_text(dir + "/prompt.txt", "And God said");
  write_text(dir + "/prompts.jsonl", "{\"id\": 1, \"prompt\": \"In the beginning\", \"n_predict\": 8}\n"
                                     "{\"id\": 2, \"messages\": [{\"role\": \"user\", \"content\": \"Who was Ruth?\"}]}\n");
  std::ifstream ruth(moe::test::local_fixture("kjv-heldout-ruth.txt"));
  std::stringstream text;
  text << ruth.rdbuf();
  write_text(dir + "/text.txt", text.str());
  write_text(dir + "/my-texts.txt", text.str() + text.str() + text.str());
  fs::copy_file(moe::test::local_fixture("hf-tiny-dsv3-config.json"), dir + "/hf_config.json");
  const std::string hf = moe::test::shared_fixture("hf/hf-tiny-dsv3");
  if (!hf.empty()) fs::create_directory_symlink(hf, dir + "/HF_DIR");
  const auto f32 = moe::test::run_command({moe::test::bin_dir() + "/moe-quantize", model, dir + "/model.f32.gguf", "F32",
                                           "--allow-requantize"});
  REQUIRE_MESSAGE(f32.exit_code == 0, f32.err);
  // v4.gguf and its MTP companion v4-mtp.gguf: a tiny DeepSeek-V4.
  write_text(dir + "/v4-config.json",
             R"({"architectures": ["DeepseekV4ForCausalLM"], "hidden_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 2, "head_dim": 64, "qk_rope_head_dim": 32, "q_lora_rank": 64, "o_groups": 2,
                 "o_lora_rank": 32, "sliding_window": 16, "compress_ratios": [4, 128], "index_n_heads": 2,
                 "index_head_dim": 64, "index_topk": 4, "hc_mult": 4, "hc_sinkhorn_iters": 3,
                 "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
                 "n_shared_experts": 1, "num_hash_layers": 0, "swiglu_limit": 10.0,
                 "max_position_embeddings": 4096})");
  const auto v4 = moe::test::run_command({moe::test::bin_dir() + "/moe-synth", "--config", dir + "/v4-config.json",
                                          "--vocab", model, "-o", dir + "/v4.gguf", "--mtp-companion",
                                          dir + "/v4-mtp.gguf", "--type", "F32"});
  REQUIRE_MESSAGE(v4.exit_code == 0, v4.err);

  for (std::string cmd : commands) {
    CAPTURE(cmd);
    if (cmd.find("HF_DIR") != std::string::npos && hf.empty()) {
      moe::test::skip("HF_DIR example: ../shared/fixtures/hf absent");
      continue;
    }
    cmd.replace(0, 6, moe::test::shell_quote(moe::test::bin_dir()) + "/");
    const auto r = moe::test::run_shell("cd " + moe::test::shell_quote(dir) + " && " + cmd + " < /dev/null");
    CHECK_MESSAGE(r.exit_code == 0, r.err);
    CHECK(r.signal == 0);
  }
}
