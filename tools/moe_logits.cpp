// moe-logits: conformance output for anyone to compare against.
//
//   moe-logits -m MODEL (--tokens 0,672,646 | --text "...") [--gen N] --out PREFIX
//
// Evaluates the tokens in one batch and writes PREFIX.prefill.f32 (float32
// logits of every position, row-major [n_tokens][n_vocab]); then generates N
// greedy tokens one at a time through the cache, writing PREFIX.decode.f32
// (row k = logits after feeding greedy token k), and PREFIX.json with the
// tokens and greedy_tokens — the layout of the reference fixtures. Everything
// is computed in float32 (latent cache and attention included). DeepSeek-V2/V3
// (deepseek2, deepseek32) and DeepSeek-V4 (deepseek4) files.
#include <CLI/CLI.hpp>

#include "cli/command_line.h"
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/run_flags.h"
#include "cli/tool_model.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

using namespace moe;

namespace {

std::vector<int32_t> parse_tokens(const std::string& s) {
  std::vector<int32_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long v = 0;
    try {
      v = std::stol(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < 0 || v > INT32_MAX) throw_error("--tokens: '%s' is not a token id", item.c_str());
    out.push_back(static_cast<int32_t>(v));
  }
  if (out.empty()) throw_error("--tokens: no token ids given");
  return out;
}

void write_f32(const std::string& path, const std::vector<float>& v) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw_error("cannot write '%s'", tmp.c_str());
  const bool ok = std::fwrite(v.data(), sizeof(float), v.size(), f) == v.size();
  if (std::fclose(f) != 0 || !ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw_error("cannot write '%s'", path.c_str());
  }
}

int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return static_cast<int32_t>(best);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moe-logits: float32 logits for conformance testing"};
  std::string model_path, tokens_arg, text, out;
  int gen = 0, threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  app.add_option("-m,--model", model_path, "GGUF model file")->required();
  auto* tok_opt = app.add_option("--tokens", tokens_arg, "comma-separated token ids, evaluated as given");
  app.add_option("--text", text, "text to tokenize (with BOS) instead of --tokens")->excludes(tok_opt);
  app.add_option("--gen", gen, "greedy tokens to generate after the prompt")->check(CLI::Range(0, 1 << 20));
  app.add_option("--out", out, "output prefix")->required();
  app.add_option("-t,--threads", threads, "threads")->check(CLI::Range(1, 1024));
  RunFlags run;
  add_run_flags(app, run);
  if (const int rc = parse_command_line(app, argc, argv, "moe-logits", llama_common_flags()); rc >= 0) return rc;
  try {
    check_run_flags(run, "moe-logits");
    // Either model, mapped in the file's layout; the session is the one
    // interface both run behind.
    const ToolModel model = ToolModel::load(model_path, WeightFlags{WeightMemory::kMap, false});
    std::vector<int32_t> tokens;
    if (!text.empty()) {
      const Tokenizer tok = Tokenizer::from_gguf(model.file());
      tokens = tok.encode(text, /*add_bos=*/true, /*parse_special=*/true);
    } else if (!tokens_arg.empty()) {
      tokens = parse_tokens(tokens_arg);
    } else {
      throw_error("give the prompt with --tokens or --text");
    }
    const int64_t n = static_cast<int64_t>(tokens.size());
    const std::unique_ptr<InferenceSession> session_ptr = model.session(run.session(n + gen, n, threads));
    InferenceSession& session = *session_ptr;
    const int64_t V = session.n_vocab();
    std::vector<float> prefill(static_cast<size_t>(n * V));
    session.forward(tokens.data(), n, prefill.data(), /*all_logits=*/true);
    write_f32(out + ".prefill.f32", prefill);

    std::vector<float> decode(static_cast<size_t>(gen) * V);
    std::vector<int32_t> greedy;
    const float* last = &prefill[static_cast<size_t>((n - 1) * V)];
    for (int k = 0; k < gen; ++k) {
      const int32_t t = argmax(last, V);
      greedy.push_back(t);
      float* row = &decode[static_cast<size_t>(k) * V];
      session.forward(&t, 1, row, /*all_logits=*/false);
      last = row;
    }
    if (gen > 0) write_f32(out + ".decode.f32", decode);
    write_expert_stats(run, session, "moe-logits");
    nlohmann::json j;
    j["model"] = model_path;
    j["n_vocab"] = V;
    j["prompt_tokens"] = tokens;
    j["greedy_tokens"] = greedy;
    j["prefill_logits_file"] = out + ".prefill.f32";
    if (gen > 0) j["decode_logits_file"] = out + ".decode.f32";
    j["layout"] = "float32 little-endian, row-major [n_positions][n_vocab]";
    std::ofstream(out + ".json") << j.dump(2) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe-logits: error: %s\n", e.what());
    return 1;
  }
}
