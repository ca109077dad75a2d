// moe-imatrix: the importance matrix of a model over a text, as llama.cpp's
// llama-imatrix computes it, in its GGUF format (or the legacy .dat).
//
//   moe-imatrix -m MODEL -f TEXT [-o imatrix.gguf] [-c 512] [--chunks N] [-t N]
//   moe-imatrix -m MODEL -f TEXT --in-file old.gguf -o merged.gguf
//   moe-imatrix -m MODEL -f TEXT --output-format dat -o imatrix.dat
//
// The text is tokenized whole and cut into chunks of n_ctx tokens, each
// evaluated from an empty cache with its first token replaced by BOS (as
// llama-perplexity and llama-imatrix do). On the way every weight matrix of
// the layers records the squared activations entering it
// (runtime/imatrix_collector.h); moe-quantize --imatrix reads the file, and so
// does llama-quantize. The perplexity of each chunk's second half is printed
// as it goes ("[1]12.3456,..."). The file is written every --output-frequency
// chunks and at the end, each time atomically, so an interruption keeps what
// was collected up to the last write.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "cli/chunk_evaluator.h"
#include "cli/command_line.h"
#include "cli/run_flags.h"
#include "cli/tool_model.h"
#include "convert/imatrix_file.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "core/output_guard.h"
#include "runtime/perplexity.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

using namespace moe;

namespace {

struct Options {
  std::string model, text_file, out_file = "imatrix.gguf", format;
  std::vector<std::string> in_files;
  int n_ctx = 512;
  int n_batch = 2048;
  int n_chunks = -1;      // all
  int from_chunk = 0;     // --chunk: skip this many chunks first
  int output_frequency = 10;
  int save_frequency = 0;
  bool process_output = false;
  bool no_ppl = false;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  RunFlags run;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

int run(const Options& o) {
  const bool legacy = o.format == "dat";
  if (o.format.empty() && !ends_with(o.out_file, ".gguf"))
    std::fprintf(stderr, "moe-imatrix: warning: writing the GGUF format to '%s', which does not end in .gguf "
                         "(--output-format dat writes the legacy format)\n", o.out_file.c_str());
  refuse_output_over_input(o.out_file, o.model);
  refuse_output_over_input(o.out_file, o.text_file);
  require_writable_output(o.out_file);

  ImatrixSums sums;
  sums.chunk_size = o.n_ctx;
  for (const std::string& f : o.in_files) {
    add_imatrix_file(sums, f, o.n_ctx);
    std::fprintf(stderr, "moe-imatrix: added %s (%zu entries, %d chunks so far)\n", f.c_str(), sums.entries.size(),
                 sums.chunk_count);
  }
  const int32_t chunks_before = sums.chunk_count;
  sums.datasets.push_back(o.text_file);

  // Either family, mapped in the file's layout (the names the sums are kept under).
  const ToolModel model = ToolModel::load(o.model, WeightFlags{WeightMemory::kMap, false});
  const Tokenizer tok = Tokenizer::from_gguf(model.file());
  std::vector<int32_t> tokens = tok.encode(read_text_file(o.text_file), /*add_special=*/true, /*parse_special=*/false);
  if (o.from_chunk > 0) {
    const size_t skip = static_cast<size_t>(o.from_chunk) * static_cast<size_t>(o.n_ctx);
    MOE_ASSERT(skip + 2 * static_cast<size_t>(o.n_ctx) < tokens.size(),
               "--chunk %d: not enough tokens left after removing %d chunks", o.from_chunk, o.from_chunk);
    tokens.erase(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(skip));
  }
  MOE_ASSERT(tokens.size() >= 2 * static_cast<size_t>(o.n_ctx),
             "%s tokenizes to %zu tokens; a context of %d needs at least %d", o.text_file.c_str(), tokens.size(),
             o.n_ctx, 2 * o.n_ctx);
  const int n_chunk_max = static_cast<int>(tokens.size() / static_cast<size_t>(o.n_ctx));
  const int n_chunk = o.n_chunks < 0 ? n_chunk_max : std::min(o.n_chunks, n_chunk_max);
  std::fprintf(stderr, "moe-imatrix: computing over %d chunks, n_ctx=%d, batch_size=%d\n", n_chunk, o.n_ctx,
               std::min(o.n_batch, o.n_ctx));

  SessionOptions so = o.run.session(o.n_ctx, std::min(o.n_batch, o.n_ctx), o.threads);
  so.backends.collect_imatrix = &sums;
  so.backends.imatrix_process_output = o.process_output;
  ChunkEvaluator ev(model.session(so), tok, o.n_ctx, so.n_batch);
  const int64_t V = ev.vocab();
  NllSums nll;
  for (int c = 0; c < n_chunk; ++c) {
    throw_if_interrupted();
    const auto t0 = std::chrono::steady_clock::now();
    const int32_t* chunk = &tokens[static_cast<size_t>(c) * o.n_ctx];
    ev.eval(chunk);
    sums.chunk_count = chunks_before + c + 1;
    if (c == 0)
      std::fprintf(stderr, "moe-imatrix: %.2f seconds per chunk\n",
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (!o.no_ppl) {
      for (int j = ev.first(); j < o.n_ctx - 1; ++j) nll.add(token_nll(ev.row(j), V, chunk[j + 1]));
      std::printf("[%d]%.4lf,", c + 1, nll.ppl());
      std::fflush(stdout);
    }
    if (o.output_frequency > 0 && (c + 1) % o.output_frequency == 0 && c + 1 < n_chunk)
      save_importance_matrix(sums, o.out_file, legacy);
    if (o.save_frequency > 0 && (c + 1) % o.save_frequency == 0)
      save_importance_matrix(sums, o.out_file + ".at_" + std::to_string(sums.chunk_count), legacy);
  }
  if (!o.no_ppl) {
    std::printf("\n");
    const PplEstimate e = final_estimate(nll);
    if (e.ok) std::printf("Final estimate: PPL = %.4lf +/- %.5lf\n", e.ppl, e.uncertainty);
  }
  save_importance_matrix(sums, o.out_file, legacy);
  int partial = 0;
  for (const auto& [name, e] : sums.entries)
    if (std::count(e.counts.begin(), e.counts.end(), 0) > 0) ++partial;
  std::fprintf(stderr, "moe-imatrix: wrote %s: %zu entries (%d with experts that saw no token), %d chunks\n",
               o.out_file.c_str(), sums.entries.size(), partial, sums.chunk_count);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moe-imatrix: importance matrix of a model over a text, as llama.cpp's llama-imatrix"};
  Options o;
  app.add_option("-m,--model", o.model, "model GGUF")->required();
  app.add_option("-f,--file", o.text_file, "text to run the model over")->required()->check(CLI::ExistingFile);
  app.add_option("-o,--output-file", o.out_file, "where to write the importance matrix (default imatrix.gguf)");
  app.add_option("--output-format", o.format, "gguf (default) or dat (llama.cpp's legacy format)")
      ->check(CLI::IsMember({"gguf", "dat"}));
  app.add_option("--in-file", o.in_files, "importance matrix to start from (GGUF or .dat); repeatable")
      ->check(CLI::ExistingFile)
      ->allow_extra_args(false);
  app.add_option("-c,--ctx-size", o.n_ctx, "tokens per chunk (default 512)")->check(CLI::Range(8, 1 << 20));
  app.add_option("-b,--batch-size", o.n_batch, "tokens per forward step (default 2048, at most n_ctx)")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--chunks", o.n_chunks, "at most this many chunks (default: all)");
  app.add_option("--chunk,--from-chunk", o.from_chunk, "skip this many chunks of the text first")
      ->check(CLI::Range(0, 1 << 30));
  app.add_option("--output-frequency", o.output_frequency, "write the file every N chunks (default 10)")
      ->check(CLI::Range(0, 1 << 30));
  app.add_option("--save-frequency", o.save_frequency, "also keep a copy FILE.at_N every N chunks")
      ->check(CLI::Range(0, 1 << 30));
  app.add_flag("--process-output", o.process_output, "collect output.weight too");
  app.add_flag("--no-ppl", o.no_ppl, "do not compute perplexity");
  app.add_option("-t,--threads", o.threads, "threads (default: all cores)")->check(CLI::Range(1, 1024));
  add_run_flags(app, o.run);
  FlagTable flags = llama_common_flags();
  flags.aliases["-ofreq"] = "--output-frequency";  // llama-imatrix's spellings
  flags.aliases["-sfreq"] = "--save-frequency";
  if (const int rc = parse_command_line(app, argc, argv, "moe-imatrix", flags); rc >= 0) return rc;
  try {
    check_run_flags(o.run, "moe-imatrix");
    install_interrupt_handler();
    return run(o);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "moe-imatrix: error: %s\n", e.what());
    if (const int sig = interrupt_signal()) return 128 + sig;
  }
  return 1;
}
