// Batch mode: `moe --batch FILE` answers every line of a JSONL or text file
// and writes one JSON record per input line to stdout, in input order:
//   {"id":..., "line":N, "text":"...", "prompt_tokens":P, "generated_tokens":G,
//    "finish_reason":"stop|length|eos", "seed":S, "timings":{...}}
// or, for a line that cannot be answered,
//   {"id":..., "line":N, "error":"...", "finish_reason":"error"}
// The exit code is 1 when any line failed.
//
// Prompts run one after another: the CPU session holds one sequence, and a
// batch of sequences would not make its matrix products cheaper per token
// while it works token-row by token-row. A backend that gains from several
// sequences at once can take the parsed requests in groups; nothing in the
// parsing or the records assumes one at a time.
#include <cstdio>
#include <filesystem>
#include <set>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "chat/batch_input.h"
#include "cli/options.h"
#include "cli/output.h"
#include "cli/result_json.h"
#include "core/error.h"
#include "runtime/generate.h"

namespace moe {

namespace {

using nlohmann::json;

std::string read_input(const std::string& path) {
  std::stringstream ss;
  if (path == "-") {
    ss << std::cin.rdbuf();
  } else {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) throw_error("batch file '%s' is a directory", path.c_str());
    std::ifstream f(path, std::ios::binary);
    if (!f) throw_error("cannot read batch file '%s'", path.c_str());
    ss << f.rdbuf();
    if (f.bad()) throw_error("cannot read batch file '%s'", path.c_str());
  }
  return ss.str();
}

// Each record is flushed, so a consumer sees each answer as soon as it is
// done; a failed write ends the batch (write_stdout throws).
void print_record(const json& j) { write_stdout(json_line(j)); }

json error_record(const BatchRequest& q, const std::string& error) {
  return {{"id", q.id}, {"line", q.line}, {"error", error}, {"finish_reason", "error"}};
}

}  // namespace

int run_batch(const CliOptions& o) {
  LoadedModel m = load_model(o);
  const std::string input = read_input(o.batch_file);
  const std::vector<std::string_view> lines = batch_split_lines(input);
  BatchFormat format = batch_format_from_name(o.batch_format);
  if (format == BatchFormat::automatic) format = batch_detect_format(lines);

  // Without -s, one random base seed for the run; each line's seed is
  // base + line index unless the line sets its own, and every record says
  // which seed it used, so any answer can be reproduced.
  const uint64_t base_seed = o.sampling.seed != kRandomSeed ? o.sampling.seed : std::random_device{}() & 0xFFFFFFFFu;
  std::optional<ChatTemplate> tmpl;  // resolved on the first chat request
  const std::unique_ptr<Deepseek2Session> session_ptr = make_session(o, m);
  Deepseek2Session& session = *session_ptr;
  const auto n_vocab = static_cast<int32_t>(m.model->config().vocab_size);
  if (o.n_parallel > 1) throw_error("-np %d: decoding several batch lines at once is not supported yet", o.n_parallel);
  std::set<std::string> warned_keys;  // unknown JSONL keys, each warned about once
  int n_failed = 0, n_done = 0;
  double total_s = 0;
  int64_t total_gen = 0;

  for (size_t i = 0; i < lines.size(); ++i) {
    const int64_t line_no = static_cast<int64_t>(i) + 1;
    BatchLine parsed = batch_parse_line(lines[i], line_no, format);
    if (parsed.kind == BatchLine::blank) continue;
    const BatchRequest& q = parsed.req;
    for (const std::string& k : q.unknown_keys)
      if (warned_keys.insert(k).second && !o.quiet)
        std::fprintf(stderr, "moe: batch: warning: line %lld: unknown key \"%s\" is ignored (known: id, prompt, "
                     "messages, n_predict, temperature, seed, stop)\n", static_cast<long long>(line_no), k.c_str());
    if (parsed.kind == BatchLine::invalid) {
      print_record(error_record(q, parsed.error));
      ++n_failed;
      continue;
    }
    try {
      std::vector<int32_t> tokens;
      if (q.is_chat()) {
        if (!tmpl) tmpl = chat_template_for(o, m);
        tokens = m.tok.encode(tmpl->render(q.messages, true), /*add_special=*/false, /*parse_special=*/true);
      } else {
        tokens = m.tok.encode(q.prompt, /*add_special=*/true, /*parse_special=*/true);
      }
      if (tokens.empty()) throw_error("the prompt tokenizes to nothing");
      require_prompt_fits(tokens.size(), static_cast<long long>(m.n_ctx), "");
      SamplerParams sp = o.sampling;
      sp.seed = q.seed ? *q.seed : base_seed + static_cast<uint64_t>(i);
      if (q.temperature) sp.temp = *q.temperature;
      Sampler sampler(sp, n_vocab);
      GenerateOptions g;
      g.n_predict = q.n_predict ? *q.n_predict : o.n_predict;
      g.stop = o.stop;
      g.stop.insert(g.stop.end(), q.stop.begin(), q.stop.end());
      g.prompt_chunk = o.n_batch;
      g.ignore_eos = o.ignore_eos;
      session.reset();
      const GenerateResult r = generate(session, m.tok, sampler, tokens, g, [](std::string_view) {}, [] { return false; });
      json rec = generate_result_json(r, sampler.seed());
      rec["id"] = q.id;
      rec["line"] = q.line;
      print_record(rec);
      ++n_done;
      total_s += r.prompt_s + r.gen_s;
      total_gen += r.n_generated;
    } catch (const std::exception& e) {
      print_record(error_record(q, e.what()));
      ++n_failed;
    }
  }
  write_expert_stats(o.run, session, "moe");
  if (!o.quiet)
    std::fprintf(stderr, "moe: batch: %d answered, %d failed | load %.2f s | %.2f s generating, %lld tokens\n", n_done,
                 n_failed, m.load_s, total_s, static_cast<long long>(total_gen));
  return n_failed > 0 ? 1 : 0;
}

}  // namespace moe
