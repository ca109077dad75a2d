// One-shot mode: `moe -p TEXT` (or -f FILE) continues the prompt as raw text
// (no chat template), streaming tokens to stdout, or with --json prints one
// JSON object at the end. Ctrl-C stops the answer: what was generated, the
// timing line and the JSON object are still written, and the exit status is
// 130 as for any program stopped by SIGINT.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/options.h"
#include "cli/output.h"
#include "cli/prompt_cache.h"
#include "cli/result_json.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "runtime/generate.h"

namespace moe {

namespace {

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw_error("cannot read prompt file '%s'", path.c_str());
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw_error("cannot read prompt file '%s' (is it a directory?)", path.c_str());
  return ss.str();
}

}  // namespace

int run_one_shot(const CliOptions& o) {
  LoadedModel m = load_model(o);
  std::string prompt = o.prompt;
  if (!o.prompt_file.empty()) prompt = read_text_file(o.prompt_file);
  if (prompt.empty()) throw_error("the prompt is empty");

  const std::vector<int32_t> tokens = m.tok.encode(prompt, /*add_special=*/true, /*parse_special=*/true);
  if (tokens.empty()) throw_error("the prompt tokenizes to nothing");
  require_prompt_fits(tokens.size(), static_cast<long long>(m.n_ctx), " (raise -c, or shorten the prompt)");

  const std::unique_ptr<InferenceSession> session_ptr = make_session(o, m);
  InferenceSession& session = *session_ptr;
  Sampler sampler(o.sampling, static_cast<int32_t>(m.n_vocab()));
  GenerateOptions g;
  g.n_predict = o.n_predict;
  g.stop = o.stop;
  g.prompt_chunk = o.n_batch;
  g.ignore_eos = o.ignore_eos;
  g.spec_draft_n = spec_draft_n(o);
  if (o.context_shift) {  // llama.cpp's n_keep: the BOS is always kept
    const bool bos = m.tok.bos() >= 0 && tokens.front() == m.tok.bos();
    const auto n = static_cast<int64_t>(tokens.size());
    g.shift_keep = o.n_keep < 0 ? n : std::min<int64_t>(n, o.n_keep + (bos ? 1 : 0));
  }

  const int64_t reused = o.prompt_cache.empty() ? 0 : prompt_cache_load(o.prompt_cache, session, tokens);
  const std::vector<int32_t> fresh(tokens.begin() + reused, tokens.end());
  // The loaded prefix is prompt too: its tokens count for the penalties
  // (generate() adds the ones it evaluates).
  for (int64_t i = 0; i < reused; ++i) sampler.accept(tokens[static_cast<size_t>(i)]);

  if (o.display_prompt && !o.json) write_stdout(prompt);
  auto stream = [&](std::string_view text) {
    if (!o.json) write_stdout(text);
  };
  install_interrupt_handler();
  const GenerateResult r = generate(session, m.tok, sampler, fresh, g, stream, [] { return interrupt_signal() != 0; });
  if (!o.prompt_cache.empty() && !o.prompt_cache_ro && r.prompt_complete)
    prompt_cache_save(o.prompt_cache, o.model, session, tokens);

  if (o.json) {
    nlohmann::json j = generate_result_json(r, sampler.seed());
    j["timings"]["load_s"] = m.load_s;
    j["prompt_tokens_cached"] = reused;
    with_model_session(session, [&](const auto& s) { j["placement"] = s.placement().to_json(); });
    write_stdout(json_line(j));
  } else {
    write_stdout("\n");
  }

  write_expert_stats(o.run, session, "moe");
  if (!o.quiet)
    std::fprintf(stderr,
                 "\nmoe: load %.2f s | prompt %lld tokens%s, %.2f s, %.1f tok/s | generation %lld tokens, %.2f s, "
                 "%.1f tok/s%s | stop: %s | seed %llu | %d threads\n",
                 m.load_s, static_cast<long long>(r.n_prompt),
                 reused > 0 ? strfmt(" (+%lld from the prompt cache)", static_cast<long long>(reused)).c_str() : "",
                 r.prompt_s,
                 static_cast<double>(r.n_prompt) / std::max(r.prompt_s, 1e-9), static_cast<long long>(r.n_generated),
                 r.gen_s, static_cast<double>(r.n_generated) / std::max(r.gen_s, 1e-9),
                 spec_stats_text(r.n_drafted, r.n_accepted).c_str(), finish_reason_text(r.finish),
                 static_cast<unsigned long long>(sampler.seed()), o.n_threads);
  return r.finish == FinishReason::interrupted ? 128 + SIGINT : 0;
}

}  // namespace moe
