// Batch mode: `moe --batch FILE` answers every line of a JSONL or text file
// and writes one JSON record per input line to stdout, in input order:
//   {"id":..., "line":N, "text":"...", "prompt_tokens":P, "generated_tokens":G,
//    "finish_reason":"stop|length|eos", "seed":S, "timings":{...}}
// or, for a line that cannot be answered,
//   {"id":..., "line":N, "error":"...", "finish_reason":"error"}
// The exit code is 1 when any line failed.
//
// With -np N, up to N lines are answered at once (runtime/parallel_generate.h:
// continuous batching); each line's answer is the same as with -np 1. The
// records keep input order (a finished record waits for the lines before
// it) unless --batch-unordered writes each as it finishes. Ctrl-C ends the
// lines in flight as "interrupted", writes every finished record, and starts
// no more. A prompt prefix several lines share is evaluated once and copied
// between their caches (runtime/parallel_generate.h); a record's
// "prompt_tokens_shared" says how many of its prompt tokens were copied.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <optional>
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
#include "core/interrupt.h"
#include "runtime/parallel_generate.h"

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
  const std::unique_ptr<InferenceSession> session_ptr = make_session(o, m);
  InferenceSession& session = *session_ptr;
  std::set<std::string> warned_keys;  // unknown JSONL keys, each warned about once

  // Every line becomes a record slot; lines that cannot be answered get
  // their error record now, the others a request.
  std::vector<std::optional<json>> records;
  std::vector<ParallelRequest> requests;
  std::vector<size_t> request_record;  // [request] its record
  std::vector<const BatchRequest*> request_line;
  std::vector<BatchLine> parsed_lines;
  parsed_lines.reserve(lines.size());
  int n_failed = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const int64_t line_no = static_cast<int64_t>(i) + 1;
    parsed_lines.push_back(batch_parse_line(lines[i], line_no, format));
    const BatchLine& parsed = parsed_lines.back();
    if (parsed.kind == BatchLine::blank) continue;
    const BatchRequest& q = parsed.req;
    for (const std::string& k : q.unknown_keys)
      if (warned_keys.insert(k).second && !o.quiet)
        std::fprintf(stderr, "moe: batch: warning: line %lld: unknown key \"%s\" is ignored (known: id, prompt, "
                     "messages, n_predict, temperature, seed, stop)\n", static_cast<long long>(line_no), k.c_str());
    records.emplace_back();
    if (parsed.kind == BatchLine::invalid) {
      records.back() = error_record(q, parsed.error);
      ++n_failed;
      continue;
    }
    try {
      ParallelRequest r;
      if (q.is_chat()) {
        if (!tmpl) tmpl = chat_template_for(o, m);
        r.prompt = m.tok.encode(tmpl->render(q.messages, true), /*add_special=*/false, /*parse_special=*/true);
      } else {
        r.prompt = m.tok.encode(q.prompt, /*add_special=*/true, /*parse_special=*/true);
      }
      if (r.prompt.empty()) throw_error("the prompt tokenizes to nothing");
      require_prompt_fits(r.prompt.size(), static_cast<long long>(m.n_ctx), "");
      r.sampling = o.sampling;
      r.sampling.seed = q.seed ? *q.seed : base_seed + static_cast<uint64_t>(i);
      if (q.temperature) r.sampling.temp = *q.temperature;
      sampler_params_validate(r.sampling, static_cast<int32_t>(m.n_vocab()));
      r.options.n_predict = q.n_predict ? *q.n_predict : o.n_predict;
      r.options.stop = o.stop;
      r.options.stop.insert(r.options.stop.end(), q.stop.begin(), q.stop.end());
      r.options.prompt_chunk = o.n_batch;
      r.options.ignore_eos = o.ignore_eos;
      r.options.spec_draft_n = spec_draft_n(o);
      requests.push_back(std::move(r));
      request_record.push_back(records.size() - 1);
      request_line.push_back(&q);
    } catch (const std::exception& e) {
      records.back() = error_record(q, e.what());
      ++n_failed;
    }
  }

  // A prefix several lines share (a system prompt) is evaluated once.
  {
    std::vector<const std::vector<int32_t>*> prompts;
    for (const ParallelRequest& r : requests) prompts.push_back(&r.prompt);
    const std::vector<size_t> shared = shared_prefixes(prompts);
    for (size_t i = 0; i < requests.size(); ++i) requests[i].shared_prefix = shared[i];
  }

  // Records go out in input order as soon as every record before them is
  // ready (or each at once with --batch-unordered).
  size_t printed = 0;
  std::vector<bool> done(records.size(), false);
  auto flush_ready = [&] {
    while (printed < records.size() && records[printed]) print_record(*records[printed++]);
  };
  auto publish = [&](size_t k) {
    if (o.batch_unordered) {
      if (!done[k]) print_record(*records[k]);
      done[k] = true;
    } else {
      flush_ready();
    }
  };
  for (size_t k = 0; k < records.size(); ++k)
    if (records[k]) publish(k);

  int n_done = 0;
  double total_s = 0;
  int64_t total_gen = 0, total_drafted = 0, total_accepted = 0;
  install_interrupt_handler();
  const auto t0 = std::chrono::steady_clock::now();
  generate_parallel(
      session, m.tok, requests,
      [&](size_t i, GenerateResult& r, uint64_t seed) {
        const BatchRequest& q = *request_line[i];
        json rec = generate_result_json(r, seed);
        rec["id"] = q.id;
        rec["line"] = q.line;
        if (r.n_prompt_copied > 0) rec["prompt_tokens_shared"] = r.n_prompt_copied;
        records[request_record[i]] = std::move(rec);
        publish(request_record[i]);
        ++n_done;
        total_gen += r.n_generated;
        total_drafted += r.n_drafted;
        total_accepted += r.n_accepted;
      },
      [] { return interrupt_signal() != 0; });
  total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Interrupted: the finished records that still wait for an earlier line
  // that never ran go out too, in order.
  if (!o.batch_unordered)
    for (; printed < records.size(); ++printed)
      if (records[printed]) print_record(*records[printed]);
  write_expert_stats(o.run, session, "moe");
  if (!o.quiet)
    std::fprintf(stderr, "moe: batch: %d answered, %d failed | load %.2f s | %.2f s generating, %lld tokens%s%s\n", n_done,
                 n_failed, m.load_s, total_s, static_cast<long long>(total_gen),
                 o.n_parallel > 1 ? (" | -np " + std::to_string(o.n_parallel)).c_str() : "",
                 spec_stats_text(total_drafted, total_accepted).c_str());
  if (interrupt_signal() != 0) return 128 + interrupt_signal();
  return n_failed > 0 ? 1 : 0;
}

}  // namespace moe
