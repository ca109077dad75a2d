// moe: run a DeepSeek-architecture GGUF model.
//
//   moe -m model.gguf -p "Explain MLA" -n 256     one prompt, tokens streamed to stdout
//
// Flags follow llama.cpp where the meaning is the same. Timings go to stderr.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "model/deepseek2.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

using namespace moe;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw_error("cannot read prompt file '%s'", path.c_str());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Options {
  std::string model = MOE_DEFAULT_MODEL;
  std::string prompt;
  std::string prompt_file;
  int n_predict = -1;
  int n_ctx = 4096;
  int n_batch = 512;
  int n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  SamplerParams sampling;
  bool display_prompt = true;
  bool model_given = false;
};

int run(const Options& o) {
  const auto t_load = Clock::now();
  auto model = Deepseek2Model::load(o.model);
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  const double load_s = seconds_since(t_load);
  if (!o.model_given)
    std::fprintf(stderr, "moe: no model given (-m): using the built-in default model %s\n", o.model.c_str());

  std::string prompt = o.prompt;
  if (!o.prompt_file.empty()) prompt = read_text_file(o.prompt_file);
  if (prompt.empty())
    throw_error("no prompt: give one with -p TEXT or -f FILE (interactive chat is not available yet)");

  const int64_t model_ctx = model->config().max_position_embeddings;
  const int64_t n_ctx = o.n_ctx > 0 ? std::min<int64_t>(o.n_ctx, model_ctx) : model_ctx;
  const std::vector<int32_t> tokens = tok.encode(prompt, /*add_special=*/true, /*parse_special=*/true);
  if (tokens.empty()) throw_error("the prompt tokenizes to nothing");
  if (static_cast<int64_t>(tokens.size()) >= n_ctx)
    throw_error("the prompt is %zu tokens, longer than the context of %lld tokens (raise -c, or shorten the prompt)",
                tokens.size(), static_cast<long long>(n_ctx));

  Deepseek2Session session(*model, n_ctx, o.n_batch, o.n_threads);
  Sampler sampler(o.sampling, static_cast<int32_t>(model->config().vocab_size));
  for (int32_t t : tokens) sampler.accept(t);
  std::vector<float> logits(static_cast<size_t>(model->config().vocab_size));

  if (o.display_prompt) {
    std::fwrite(prompt.data(), 1, prompt.size(), stdout);
    std::fflush(stdout);
  }
  const auto t_prompt = Clock::now();
  session.forward(tokens.data(), static_cast<int64_t>(tokens.size()), logits.data(), false);
  const double prompt_s = seconds_since(t_prompt);

  // Generated text follows the prompt: no SentencePiece leading-space strip.
  StreamDecoder out(tok, /*special=*/false, /*at_start=*/false);
  const auto t_gen = Clock::now();
  int64_t n_gen = 0;
  const char* stop_reason = "length";
  for (;;) {
    if (o.n_predict >= 0 && n_gen >= o.n_predict) break;
    const int32_t next = sampler.sample(logits.data());
    ++n_gen;
    if (tok.is_eog(next)) {
      stop_reason = "eos";
      break;
    }
    const std::string piece = out.push(next);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    if (session.n_past() >= n_ctx) {
      stop_reason = "context full";
      break;
    }
    session.forward(&next, 1, logits.data(), false);
  }
  const std::string rest = out.flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  const double gen_s = seconds_since(t_gen);

  std::fprintf(stderr,
               "\nmoe: load %.2f s | prompt %zu tokens, %.2f s, %.1f tok/s | generation %lld tokens, %.2f s, %.1f tok/s"
               " | stop: %s | seed %llu | %d threads\n",
               load_s, tokens.size(), prompt_s, static_cast<double>(tokens.size()) / std::max(prompt_s, 1e-9),
               static_cast<long long>(n_gen), gen_s, static_cast<double>(n_gen) / std::max(gen_s, 1e-9), stop_reason,
               static_cast<unsigned long long>(sampler.seed()), o.n_threads);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moe: run DeepSeek-architecture MoE models from a GGUF file"};
  Options o;
  uint64_t seed = kRandomSeed;
  auto* m = app.add_option("-m,--model", o.model, "GGUF model file (default: the built-in model)");
  app.add_option("-p,--prompt", o.prompt, "prompt text");
  app.add_option("-f,--file", o.prompt_file, "read the prompt from a file");
  app.add_option("-n,--n-predict", o.n_predict, "tokens to generate (-1: until end of text or full context)");
  app.add_option("-c,--ctx-size", o.n_ctx, "context size in tokens (0: the model's)")->check(CLI::Range(0, 1 << 24));
  app.add_option("-b,--batch-size", o.n_batch, "tokens per batch when evaluating the prompt")->check(CLI::Range(1, 1 << 16));
  app.add_option("-t,--threads", o.n_threads, "threads")->check(CLI::Range(1, 1024));
  app.add_option("-s,--seed", seed, "random seed (default: random)");
  app.add_option("--temp", o.sampling.temp, "temperature (<= 0: greedy)");
  app.add_option("--top-k", o.sampling.top_k, "top-k sampling (<= 0: off)");
  app.add_option("--top-p", o.sampling.top_p, "top-p sampling (1: off)");
  app.add_option("--min-p", o.sampling.min_p, "min-p sampling (0: off)");
  app.add_option("--repeat-penalty", o.sampling.repeat_penalty, "penalty for repeated tokens (1: off)");
  app.add_option("--repeat-last-n", o.sampling.repeat_last_n, "tokens considered for the penalties");
  app.add_option("--presence-penalty", o.sampling.presence_penalty, "presence penalty (0: off)");
  app.add_option("--frequency-penalty", o.sampling.frequency_penalty, "frequency penalty (0: off)");
  app.add_flag("!--no-display-prompt", o.display_prompt, "do not echo the prompt");
  CLI11_PARSE(app, argc, argv);
  o.model_given = m->count() > 0;
  o.sampling.seed = seed;
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "moe: error: %s\n", e.what());
    return 1;
  }
}
