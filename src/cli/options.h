// The `moe` command line: options shared by the one-shot, chat and batch
// modes, and the entry point of each mode (main.cpp parses and dispatches).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "cli/run_flags.h"
#include "cli/tool_model.h"
#include "core/thread_pool.h"
#include "core/weight_memory.h"
#include "model/deepseek2.h"
#include "model/deepseek4.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace moe {

struct CliOptions {
  std::string model = MOE_DEFAULT_MODEL;
  bool model_given = false;
  std::string prompt;
  bool prompt_given = false;  // -p was given (possibly empty)
  std::string prompt_file;
  int n_predict = -1;
  int n_ctx = 4096;
  bool n_ctx_given = false;
  int n_batch = 512;
  int n_ubatch = 512;
  int n_threads = default_thread_count();
  int n_threads_batch = 0;
  bool ignore_eos = false;
  bool verbose = false;
  bool mlock = false;
  WeightFlags weights;  // --mmap / --no-mmap, --repack / --no-repack
  SamplerParams sampling;
  RunFlags run;  // backends, placement, expert statistics
  bool display_prompt = true;
  std::vector<std::string> stop;
  bool json = false;   // one-shot: one JSON object on stdout
  bool quiet = false;  // no timing lines, no progress bar
  // chat
  bool single_turn = false;   // -st: one chat turn, then exit
  std::string chat_template;  // family name; "" = detect from the model
  std::string system;
  bool hide_reasoning = false;
  // --reasoning-budget: -1 lets models with a thinking switch (V3.1, V3.2)
  // think, 0 turns thinking off (llama.cpp's flag and values).
  int reasoning_budget = -1;
  // --chat-template-kwargs JSON (llama.cpp's): enable_thinking / thinking
  // (bool) and reasoning_effort ("max" or "high", DeepSeek-V4).
  std::string chat_template_kwargs;
  bool context_shift = false;
  int n_keep = 0;  // --keep: prompt tokens a context shift keeps (-1: all)
  std::string prompt_cache;   // --prompt-cache FILE (one-shot)
  bool prompt_cache_ro = false;  // --prompt-cache-ro: load it, never write it
  // batch
  std::string batch_file;  // "-" = stdin
  std::string batch_format = "auto";
  int n_parallel = 1;  // -np
  bool batch_unordered = false;  // records as they finish, not in input order
  // speculative decoding
  std::string spec_type = "none";  // --spec-type: none or draft-mtp
  int spec_draft_n_max = 1;        // --spec-draft-n-max: drafts per step
  std::string model_draft;         // -md: a deepseek4 model's MTP companion GGUF
};

// What the spec flags give a generation (0: no drafting).
inline int64_t spec_draft_n(const CliOptions& o) { return o.spec_type == "draft-mtp" ? o.spec_draft_n_max : 0; }
// " | drafts 45 of 60 accepted (75%)" for the timing lines, or "".
std::string spec_stats_text(int64_t drafted, int64_t accepted);

// A loaded model with what every mode needs next to it: a deepseek2 or
// deepseek32 file (model), or a deepseek4 file (v4).
struct LoadedModel {
  std::unique_ptr<Deepseek2Model> model;
  std::unique_ptr<Deepseek4Model> v4;
  Tokenizer tok;
  int64_t n_ctx;  // the session's context: -c capped by the model's
  double load_s;

  const GgufFile& file() const { return v4 ? v4->file() : model->file(); }
  int64_t n_vocab() const { return v4 ? v4->config().vocab_size : model->config().vocab_size; }
  const std::string& architecture() const { return v4 ? v4->config().architecture : model->config().architecture; }
};

// Loads the model (a progress bar on a terminal while its pages are read in).
LoadedModel load_model(const CliOptions& o);
// A session on the backends and placement the flags ask for; prints the
// placement (unless -q).
std::unique_ptr<InferenceSession> make_session(const CliOptions& o, const LoadedModel& m);
// The chat template: --chat-template NAME, else detected from the model's
// tokenizer.chat_template. Throws naming the choices when neither works.
ChatTemplate chat_template_for(const CliOptions& o, const LoadedModel& m);

int run_one_shot(const CliOptions& o);
int run_chat(const CliOptions& o);
int run_batch(const CliOptions& o);

}  // namespace moe
