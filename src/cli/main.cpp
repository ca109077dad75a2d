// moe: run a DeepSeek-architecture GGUF model.
//
//   moe -m model.gguf -p "Explain MLA" -n 256     one prompt, tokens streamed to stdout
//   moe -m model.gguf                             interactive chat (also -i / --chat)
//   moe -m model.gguf --batch prompts.jsonl       one JSON answer per input line
//
// Flags follow llama.cpp where the meaning is the same. Timings go to stderr.
// This file only parses options and dispatches; each mode has its own file
// (one_shot.cpp, chat_repl.cpp, batch.cpp) over one generation loop
// (generate.cpp).
#include <CLI/CLI.hpp>

#include <cstdio>

#include "cli/options.h"
#include "core/error.h"

using namespace moe;

int main(int argc, char** argv) {
  CLI::App app{"moe: run DeepSeek-architecture MoE models from a GGUF file"};
  CliOptions o;
  uint64_t seed = kRandomSeed;
  auto* m = app.add_option("-m,--model", o.model, "GGUF model file (default: the built-in model)");
  app.add_option("-p,--prompt", o.prompt, "prompt text (one-shot mode; without -p/-f/--batch: chat)");
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
  app.add_option("--stop", o.stop, "stop when the answer contains this text (not printed); repeatable")
      ->allow_extra_args(false);
  app.add_flag("--json", o.json, "one-shot: print one JSON object (text, token counts, finish reason, timings)");
  app.add_flag("-q,--quiet", o.quiet, "no timing lines or progress bar on stderr");
  app.add_flag("-i,--chat", o.chat, "interactive chat (the default without -p, -f or --batch)");
  app.add_option("--chat-template", o.chat_template,
                 "chat template instead of the model's: " + chat_family_names());
  app.add_option("--system", o.system, "chat: system prompt");
  app.add_flag("--hide-reasoning", o.hide_reasoning, "chat: do not show <think> reasoning");
  app.add_flag("--context-shift", o.context_shift,
               "chat: when the context is full, drop the oldest turns (after the system prompt) instead of stopping");
  app.add_option("--batch", o.batch_file, "answer every line of FILE (JSONL or text; - for stdin), JSONL on stdout");
  app.add_option("--batch-format", o.batch_format, "auto, jsonl or text")
      ->check(CLI::IsMember({"auto", "jsonl", "text"}));
  add_run_flags(app, o.run);
  LlamaFlagArgs args(argc, argv);
  CLI11_PARSE(app, args.argc(), args.argv());
  o.model_given = m->count() > 0;
  o.sampling.seed = seed;
  for (const auto& s : o.stop)
    if (s.empty()) {
      std::fprintf(stderr, "moe: error: --stop needs a non-empty string\n");
      return 1;
    }
  const bool one_shot = !o.prompt.empty() || !o.prompt_file.empty();
  if (!o.batch_file.empty() && (one_shot || o.chat)) {
    std::fprintf(stderr, "moe: error: --batch cannot be combined with -p, -f or --chat\n");
    return 1;
  }
  try {
    if (!o.batch_file.empty()) return run_batch(o);
    if (o.chat || !one_shot) return run_chat(o);
    return run_one_shot(o);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "moe: error: %s\n", e.what());
    return 1;
  }
}
