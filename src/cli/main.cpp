// moe: run a DeepSeek-architecture GGUF model.
//
//   moe -m model.gguf -p "Explain MLA" -n 256     one prompt, tokens streamed to stdout
//   moe -m model.gguf                             interactive chat (also -i / -cnv)
//   moe -m model.gguf --batch prompts.jsonl       one JSON answer per input line
//
// Flags follow llama.cpp (llama-cli) where the meaning is the same, single-
// dash long names included (-ngl, -sys, -cnv, -st, -ot, ...; see
// command_line.h). Timings go to stderr. This file only parses options and
// dispatches; each mode has its own file (one_shot.cpp, chat_repl.cpp,
// batch.cpp) over one generation loop (runtime/generate.h).
#include <CLI/CLI.hpp>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>

#include "chat/escapes.h"
#include "cli/command_line.h"
#include "cli/options.h"
#include "core/error.h"
#include "core/thread_pool.h"

using namespace moe;

namespace {

// -s: -1 (or nothing) draws a random seed; anything else must be a whole
// number that fits in 64 bits below the random marker.
uint64_t parse_seed(const std::string& s) {
  if (s == "-1") return kRandomSeed;
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (s.empty() || s[0] == '-' || s[0] == '+' || *end != '\0' || errno == ERANGE || v == kRandomSeed)
    throw_error("-s '%s': the seed must be -1 (random) or a whole number from 0 to %llu", s.c_str(),
                static_cast<unsigned long long>(kRandomSeed - 1));
  return v;
}

std::string version_text() {
  return strfmt("moe %s (commit %s)\nbuilt with %s for %s\n", MOE_VERSION, MOE_BUILD_COMMIT, MOE_COMPILER,
                MOE_SYSTEM_PROCESSOR);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moe: run DeepSeek-architecture MoE models from a GGUF file"};
  CliOptions o;
  std::string seed = "-1";
  bool cnv = false, no_cnv = false, interactive = false, escape = true, show_version = false;
  auto* m = app.add_option("-m,--model", o.model, "GGUF model file (default: the built-in model)");
  auto* p = app.add_option("-p,--prompt", o.prompt, "prompt text (one-shot mode; with -cnv/-i the first message)");
  app.add_option("-f,--file", o.prompt_file, "read the prompt from a file (taken as written: no escapes)");
  app.add_option("-n,--n-predict", o.n_predict, "tokens to generate (-1 or -2: until end of text or full context)")
      ->check(CLI::Range(-2, INT_MAX));
  auto* c = app.add_option("-c,--ctx-size", o.n_ctx, "context size in tokens (0: the model's)")
                ->check(CLI::Range(0, 1 << 24));
  app.add_option("-b,--batch-size", o.n_batch, "tokens per step when evaluating a prompt")->check(CLI::Range(1, 1 << 16));
  app.add_option("--ubatch-size", o.n_ubatch, "-ub: tokens per step (the smaller of -b and -ub is used)")
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("-t,--threads", o.n_threads, "threads (default: the physical cores this process may use)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--threads-batch", o.n_threads_batch, "-tb: accepted; one thread pool serves prompts and generation")
      ->check(CLI::Range(1, 1024));
  app.add_option("-s,--seed", seed, "random seed (-1: random)");
  app.add_option("--temp", o.sampling.temp, "temperature (<= 0: greedy)");
  app.add_option("--top-k", o.sampling.top_k, "top-k sampling (<= 0: off)");
  app.add_option("--top-p", o.sampling.top_p, "top-p sampling (1: off)");
  app.add_option("--min-p", o.sampling.min_p, "min-p sampling (0: off)");
  app.add_option("--repeat-penalty", o.sampling.repeat_penalty, "penalty for repeated tokens (1: off)");
  app.add_option("--repeat-last-n", o.sampling.repeat_last_n, "tokens considered for the penalties");
  app.add_option("--presence-penalty", o.sampling.presence_penalty, "presence penalty (0: off)");
  app.add_option("--frequency-penalty", o.sampling.frequency_penalty, "frequency penalty (0: off)");
  app.add_flag("--ignore-eos", o.ignore_eos, "never sample end-of-generation tokens");
  app.add_flag("!--no-display-prompt", o.display_prompt, "do not echo the prompt");
  app.add_option("--stop,-r,--reverse-prompt", o.stop,
                 "stop when the answer contains this text (not printed); repeatable")
      ->allow_extra_args(false);
  app.add_flag("-e,--escape,!--no-escape", escape, "process \\n \\t \\\\ \\' \\\" \\xHH in -p, -sys and --stop (default: on)");
  app.add_flag("--json", o.json, "one-shot: print one JSON object (text, token counts, finish reason, timings)");
  app.add_flag("-q,--quiet", o.quiet, "no timing lines or progress bar on stderr");
  app.add_flag("-v,--verbose", o.verbose, "more about the run on stderr (backends, threads)");
  app.add_flag("-i,--interactive", interactive, "interactive chat (the default without -p, -f or --batch)");
  app.add_flag("--chat", interactive, "the same as -i");
  app.add_flag("--conversation", cnv, "-cnv: chat (the default without -p or -f)");
  app.add_flag("--no-conversation", no_cnv, "-no-cnv: one-shot, never chat")->excludes("--conversation");
  app.add_flag("--single-turn", o.single_turn, "-st: chat for one turn (the -p text, or one read message), then exit");
  app.add_option("--chat-template", o.chat_template,
                 "chat template instead of the model's: " + chat_family_names());
  app.add_option("--system,--system-prompt", o.system, "chat: system prompt (-sys)");
  app.add_flag("--hide-reasoning", o.hide_reasoning, "chat: do not show <think> reasoning");
  app.add_option("--reasoning-budget", o.reasoning_budget,
                 "chat and batch: -1 lets a model with a thinking switch (DeepSeek-V3.1, V3.2, V4) think before it "
                 "answers, 0 turns thinking off (only these two values, as in llama.cpp)")
      ->check(CLI::Range(-1, 0));
  app.add_option("--chat-template-kwargs", o.chat_template_kwargs,
                 "JSON object for the chat template, as llama.cpp takes it: {\"enable_thinking\": false} (or "
                 "\"thinking\"), {\"reasoning_effort\": \"max\"} (DeepSeek-V4)");
  app.add_flag("--context-shift", o.context_shift,
               "when the context is full, drop the oldest tokens (after --keep; in chat the oldest turns after the "
               "system prompt) and go on, the kept cache shifted, not evaluated again");
  app.add_option("--prompt-cache", o.prompt_cache,
                 "one-shot: reuse the latent cache of the longest matching prompt prefix saved in FILE, and save this "
                 "prompt's cache to it");
  app.add_flag("--prompt-cache-ro", o.prompt_cache_ro, "with --prompt-cache: load the file, never write it");
  app.add_option("--keep", o.n_keep, "with --context-shift: prompt tokens to keep (after BOS; -1: the whole prompt)")
      ->check(CLI::Range(-1, 1 << 30));
  app.add_option("--batch", o.batch_file, "answer every line of FILE (JSONL or text; - for stdin), JSONL on stdout");
  app.add_option("--batch-format", o.batch_format, "auto, jsonl or text")
      ->check(CLI::IsMember({"auto", "jsonl", "text"}));
  app.add_option("--parallel", o.n_parallel, "-np: batch lines answered at once (continuous batching)")
      ->check(CLI::Range(1, 4096));
  app.add_flag("--batch-unordered", o.batch_unordered,
               "write each batch record as it finishes, not in input order");
  app.add_option("--spec-type", o.spec_type,
                 "speculative decoding: none, or draft-mtp (drafts from the model's own multi-token-prediction "
                 "module; the output is unchanged)")
      ->check(CLI::IsMember({"none", "draft-mtp"}));
  app.add_option("--spec-draft-n-max", o.spec_draft_n_max,
                 "with --spec-type draft-mtp: tokens drafted per step (1: the module's trained depth; more chain it)")
      ->check(CLI::Range(1, 16));
  app.add_option("--model-draft", o.model_draft,
                 "-md: deepseek4: the model's MTP companion GGUF (ik_llama.cpp's layout; V4 keeps its MTP module in a "
                 "file of its own), for --spec-type draft-mtp");
  app.add_flag("--mlock", o.mlock, "keep the model's pages in RAM (mlock)");
  add_weight_flags(app, o.weights);
  app.add_flag("--version", show_version, "print the version and exit");
  add_run_flags(app, o.run);

  FlagTable flags = llama_common_flags();
  take_model_draft_flag(flags);  // a V4 model's MTP companion
  flags.aliases.insert({{"-nr", "--no-repack"}, {"-sys", "--system"}, {"-cnv", "--conversation"}, {"-no-cnv", "--no-conversation"},
                        {"-st", "--single-turn"}, {"-np", "--parallel"}});
  const int parsed = parse_command_line(app, argc, argv, "moe", flags);
  if (parsed >= 0) return parsed;
  if (show_version) {
    std::fputs(version_text().c_str(), stdout);
    return 0;
  }
  o.model_given = m->count() > 0;
  o.n_ctx_given = c->count() > 0;
  if (!o.model_draft.empty()) o.spec_type = "draft-mtp";  // as llama.cpp: a draft model means drafting
  o.prompt_given = p->count() > 0;
  o.n_batch = std::min(o.n_batch, o.n_ubatch);

  try {
    o.sampling.seed = parse_seed(seed);
    check_run_flags(o.run, "moe");
    if (escape) {
      o.prompt = process_escapes(o.prompt);
      o.system = process_escapes(o.system);
      for (std::string& s : o.stop) s = process_escapes(s);
    }
    for (const auto& s : o.stop)
      if (s.empty()) throw_error("--stop needs a non-empty string");
    if (o.prompt_given && o.prompt.empty()) throw_error("the prompt (-p) is empty");
    if (o.n_threads_batch > 0 && o.n_threads_batch != o.n_threads && !o.quiet)
      std::fprintf(stderr, "moe: note: one thread pool serves prompts and generation: -tb %d is not used, -t %d is\n",
                   o.n_threads_batch, o.n_threads);

    const bool has_prompt = o.prompt_given || !o.prompt_file.empty();
    const bool chat = cnv || interactive || o.single_turn;
    if (no_cnv && chat) throw_error("-no-cnv cannot be combined with -cnv, -i or -st");
    if (!o.batch_file.empty()) {
      if (has_prompt || chat) throw_error("--batch cannot be combined with -p, -f, -i, -cnv or -st");
      return run_batch(o);
    }
    if (o.n_parallel > 1) throw_error("-np %d: parallel sequences are for --batch mode", o.n_parallel);
    if (no_cnv && !has_prompt) throw_error("-no-cnv needs a prompt: give one with -p or -f");
    if (chat || (!no_cnv && !has_prompt)) return run_chat(o);
    if (!o.quiet && (!o.system.empty() || !o.chat_template.empty()))
      std::fprintf(stderr, "moe: warning: --system and --chat-template apply to chat mode (-cnv); one-shot -p text is "
                           "continued as written\n");
    return run_one_shot(o);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "moe: error: %s\n", e.what());
    return 1;
  }
}
