// moe-perplexity: perplexity of a model over a text, and the KL divergence of
// a (quantized) model from a base model, as llama.cpp's llama-perplexity
// computes and prints them.
//
//   moe-perplexity -m MODEL -f TEXT [-c 512] [-b 2048] [-t N] [--chunks N]
//   moe-perplexity -m BASE  -f TEXT -c 512 --kl-divergence-base BASE.kld
//   moe-perplexity -m QUANT --kl-divergence-base BASE.kld --kl-divergence
//
// The text is tokenized whole (with BOS when the vocabulary adds it, special
// tokens not parsed) and cut into chunks of n_ctx tokens; each chunk is
// evaluated from an empty cache with its first token replaced by BOS, and
// the second half is scored (runtime/perplexity.h). Results go to stdout:
// the running estimate after each chunk "[1]12.3456,[2]..." and "Final
// estimate: PPL = X +/- Y" (llama.cpp prints the latter on stderr); notes and
// timings go to stderr.
//
// --kl-divergence-base FILE without --kl-divergence also saves the model's
// log-probabilities of every scored token in FILE, in llama.cpp's format
// (runtime/kld_base_file.h): files of either tool work with the other. With
// --kl-divergence the tokens come from FILE (-f is not needed) and the
// per-chunk table and final statistics of llama.cpp's KL mode are printed.
#include <CLI/CLI.hpp>

#include "cli/command_line.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "cli/chunk_evaluator.h"
#include "cli/run_flags.h"
#include "cli/tool_model.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "runtime/kld_base_file.h"
#include "runtime/perplexity.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

using namespace moe;

namespace {

struct Options {
  std::string model, text_file, kld_base;
  bool kl_divergence = false;
  bool n_ctx_given = false;
  int n_ctx = 512;
  int n_batch = 2048;
  int n_chunks = -1;  // all
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  RunFlags run;
  WeightFlags weights;
};

// The whole file, less one trailing newline (as llama.cpp's -f).
void print_eta(double seconds_per_chunk, int n_chunk) {
  std::fprintf(stderr, "perplexity: %.2f seconds per pass - ETA ", seconds_per_chunk);
  int total = static_cast<int>(seconds_per_chunk * n_chunk);
  if (total >= 3600) {
    std::fprintf(stderr, "%d hours ", total / 3600);
    total %= 3600;
  }
  std::fprintf(stderr, "%.2f minutes\n", total / 60.0);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int run_perplexity(const Options& o) {
  const std::string text = read_text_file(o.text_file);
  const ToolModel model = ToolModel::load(o.model, o.weights);
  const Tokenizer tok = Tokenizer::from_gguf(model.file());
  // As llama.cpp: an EOS appended to the text would be scored as text.
  MOE_ASSERT(!tok.vocab().add_eos, "%s: the vocabulary adds EOS (tokenizer.ggml.add_eos_token); perplexity "
             "expects it not to", o.model.c_str());
  const std::vector<int32_t> tokens = tok.encode(text, /*add_special=*/true, /*parse_special=*/false);
  const int n_ctx = o.n_ctx;
  if (static_cast<int64_t>(tokens.size()) < 2 * static_cast<int64_t>(n_ctx)) {
    std::fprintf(stderr, "perplexity: you need at least %d tokens to evaluate perplexity with a context of %d\n",
                 2 * n_ctx, n_ctx);
    std::fprintf(stderr, "perplexity: the data file you provided tokenizes to only %zu tokens\n", tokens.size());
    return 1;
  }
  const int n_chunk_max = static_cast<int>(tokens.size() / static_cast<size_t>(n_ctx));
  const int n_chunk = o.n_chunks < 0 ? n_chunk_max : std::min(o.n_chunks, n_chunk_max);
  const int n_batch = std::min(o.n_batch, n_ctx);
  std::fprintf(stderr, "perplexity: calculating perplexity over %d chunks, n_ctx=%d, batch_size=%d\n", n_chunk, n_ctx,
               n_batch);

  ChunkEvaluator ev(model.session(o.run.session(n_ctx, n_batch, o.threads)), tok, n_ctx, n_batch);
  print_placement(ev.session(), "perplexity");
  const int64_t V = ev.vocab();
  const int first = ev.first();
  const int64_t rows = kld_rows_per_chunk(n_ctx);
  std::unique_ptr<KldBaseWriter> writer;
  std::vector<uint16_t> log_probs;
  if (!o.kld_base.empty()) {
    writer = std::make_unique<KldBaseWriter>(o.kld_base, n_ctx, static_cast<int32_t>(V), n_chunk, tokens);
    log_probs.resize(static_cast<size_t>(rows * log_prob_row_u16(V)));
    std::fprintf(stderr, "perplexity: saving all logits to %s\n", o.kld_base.c_str());
  }

  NllSums sums;
  for (int c = 0; c < n_chunk; ++c) {
    throw_if_interrupted();
    const auto t0 = std::chrono::steady_clock::now();
    const int32_t* chunk = &tokens[static_cast<size_t>(c) * n_ctx];
    ev.eval(chunk);
    if (c == 0) print_eta(seconds_since(t0), n_chunk);
    for (int j = first; j < n_ctx - 1; ++j) {
      const int32_t next = chunk[j + 1];
      if (writer) {
        uint16_t* row = &log_probs[static_cast<size_t>((j - first) * log_prob_row_u16(V))];
        sums.add(encode_log_probs(ev.row(j), V, next, row));
      } else {
        sums.add(token_nll(ev.row(j), V, next));
      }
    }
    if (writer) writer->write_chunk(log_probs);
    std::printf("[%d]%.4lf,", c + 1, sums.ppl());
    std::fflush(stdout);
  }
  std::printf("\n");
  if (writer) writer->finish();
  write_expert_stats(o.run, ev.session(), "perplexity");
  const PplEstimate e = final_estimate(sums);
  if (!e.ok) {
    std::fprintf(stderr, "Unexpected negative standard deviation of log(prob)\n");
    return 1;
  }
  std::printf("Final estimate: PPL = %.4lf +/- %.5lf\n", e.ppl, e.uncertainty);
  return 0;
}

void print_kld_chunk_line(int chunk, const KldSummary& r) {
  std::printf("%4d", chunk);
  std::printf("    %9.4lf ± %9.4lf", r.ppl.mean, r.ppl.unc);
  std::printf("    %10.5lf ± %10.5lf", r.log_ppl_ratio.mean, r.log_ppl_ratio.unc);
  std::printf("    %10.5lf ± %10.5lf", r.kld.mean, r.kld.unc);
  std::printf("    %6.3lf ± %6.3lf %%", 100.0 * r.p_diff_rms.mean, 100.0 * r.p_diff_rms.unc);
  std::printf("    %6.3lf ± %6.3lf %%", 100.0 * r.same_top.mean, 100.0 * r.same_top.unc);
  std::printf("\n");
  std::fflush(stdout);
}

void print_kld_statistics(const KldSummary& r, std::vector<float>& kld, std::vector<float>& p_diff) {
  std::sort(kld.begin(), kld.end());
  std::sort(p_diff.begin(), p_diff.end());
  std::printf("====== Perplexity statistics ======\n");
  std::printf("Mean PPL(Q)                   : %10.6lf ± %10.6lf\n", r.ppl.mean, r.ppl.unc);
  std::printf("Mean PPL(base)                : %10.6lf ± %10.6lf\n", r.ppl_base.mean, r.ppl_base.unc);
  std::printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2lf%%\n", 100.0 * r.log_ppl_cor);
  std::printf("Mean ln(PPL(Q)/PPL(base))     : %10.6lf ± %10.6lf\n", r.log_ppl_ratio.mean, r.log_ppl_ratio.unc);
  std::printf("Mean PPL(Q)/PPL(base)         : %10.6lf ± %10.6lf\n", r.ppl_ratio.mean, r.ppl_ratio.unc);
  std::printf("Mean PPL(Q)-PPL(base)         : %10.6lf ± %10.6lf\n", r.ppl_diff.mean, r.ppl_diff.unc);
  std::printf("\n====== KL divergence statistics ======\n");
  std::printf("Mean    KLD: %10.6lf ± %10.6lf\n", r.kld.mean, r.kld.unc);
  std::printf("Maximum KLD: %10.6f\n", kld.back());
  const struct { const char* label; float f; } kld_pct[] = {
      {"99.9%   KLD", 0.999f}, {"99.0%   KLD", 0.990f}, {"95.0%   KLD", 0.950f}, {"90.0%   KLD", 0.900f}};
  for (const auto& p : kld_pct) std::printf("%s: %10.6f\n", p.label, percentile(kld, p.f));
  std::printf("Median  KLD: %10.6f\n", median(kld));
  const struct { const char* label; float f; } kld_low[] = {
      {"10.0%   KLD", 0.100f}, {" 5.0%   KLD", 0.050f}, {" 1.0%   KLD", 0.010f}, {" 0.1%   KLD", 0.001f}};
  for (const auto& p : kld_low) std::printf("%s: %10.6f\n", p.label, percentile(kld, p.f));
  std::printf("Minimum KLD: %10.6f\n", kld.front());
  std::printf("\n====== Token probability statistics ======\n");
  std::printf("Mean    Δp: %6.3lf ± %5.3lf %%\n", 100.0 * r.p_diff.mean, 100.0 * r.p_diff.unc);
  std::printf("Maximum Δp: %6.3lf%%\n", 100.0 * p_diff.back());
  const struct { const char* label; float f; } dp_high[] = {
      {"99.9%   Δp", 0.999f}, {"99.0%   Δp", 0.990f}, {"95.0%   Δp", 0.950f}, {"90.0%   Δp", 0.900f},
      {"75.0%   Δp", 0.750f}};
  for (const auto& p : dp_high) std::printf("%s: %6.3lf%%\n", p.label, 100.0 * percentile(p_diff, p.f));
  std::printf("Median  Δp: %6.3lf%%\n", 100.0 * median(p_diff));
  const struct { const char* label; float f; } dp_low[] = {
      {"25.0%   Δp", 0.250f}, {"10.0%   Δp", 0.100f}, {" 5.0%   Δp", 0.050f}, {" 1.0%   Δp", 0.010f},
      {" 0.1%   Δp", 0.001f}};
  for (const auto& p : dp_low) std::printf("%s: %6.3lf%%\n", p.label, 100.0 * percentile(p_diff, p.f));
  std::printf("Minimum Δp: %6.3lf%%\n", 100.0 * p_diff.front());
  std::printf("RMS Δp    : %6.3lf ± %5.3lf %%\n", 100.0 * r.p_diff_rms.mean, 100.0 * r.p_diff_rms.unc);
  std::printf("Same top p: %6.3lf ± %5.3lf %%\n", 100.0 * r.same_top.mean, 100.0 * r.same_top.unc);
}

int run_kl_divergence(const Options& o) {
  if (o.kld_base.empty())
    throw_error("you must provide a name of a file containing the log probabilities of the base model "
                "(--kl-divergence-base FILE)");
  KldBaseReader base(o.kld_base);
  const ToolModel model = ToolModel::load(o.model, o.weights);
  const Tokenizer tok = Tokenizer::from_gguf(model.file());
  if (base.n_vocab() != model.n_vocab())
    throw_error("%s: inconsistent vocabulary (%d in the file vs %lld in %s)", o.kld_base.c_str(), base.n_vocab(),
                static_cast<long long>(model.n_vocab()), o.model.c_str());
  // The chunking is the base file's: its n_ctx decides (as in llama.cpp).
  const int n_ctx = base.n_ctx();
  if (o.n_ctx_given && o.n_ctx != n_ctx)
    std::fprintf(stderr, "kl_divergence: note: -c %d ignored, %s was computed with n_ctx=%d\n", o.n_ctx,
                 o.kld_base.c_str(), n_ctx);
  const int n_chunk = o.n_chunks < 0 ? base.n_chunk() : std::min(o.n_chunks, base.n_chunk());
  const int n_batch = std::min(o.n_batch, n_ctx);
  std::fprintf(stderr, "kl_divergence: computing over %d chunks, n_ctx=%d, batch_size=%d\n", n_chunk, n_ctx,
               n_batch);

  ChunkEvaluator ev(model.session(o.run.session(n_ctx, n_batch, o.threads)), tok, n_ctx, n_batch);
  print_placement(ev.session(), "perplexity");
  const int64_t V = ev.vocab();
  const int first = ev.first();
  const int64_t rows = kld_rows_per_chunk(n_ctx);
  std::vector<uint16_t> base_rows;
  std::vector<float> kld_values, p_diff_values;
  kld_values.reserve(static_cast<size_t>(rows * n_chunk));
  p_diff_values.reserve(static_cast<size_t>(rows * n_chunk));
  KldSums sums;
  for (int c = 0; c < n_chunk; ++c) {
    throw_if_interrupted();
    const auto t0 = std::chrono::steady_clock::now();
    const int32_t* chunk = &base.tokens()[static_cast<size_t>(c) * n_ctx];
    ev.eval(chunk);
    if (c == 0) {
      print_eta(seconds_since(t0), n_chunk);
      std::printf("\nchunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              "
                  "Δp RMS            Same top p\n");
    }
    base.read_chunk(base_rows);
    for (int j = first; j < n_ctx - 1; ++j) {
      const uint16_t* base_row = &base_rows[static_cast<size_t>((j - first) * log_prob_row_u16(V))];
      const KldToken t = add_kld_token(ev.row(j), V, base_row, chunk[j + 1], sums);
      kld_values.push_back(static_cast<float>(t.kld));
      p_diff_values.push_back(t.p_diff);
    }
    print_kld_chunk_line(c + 1, summarize(sums));
  }
  std::printf("\n");
  write_expert_stats(o.run, ev.session(), "kl_divergence");
  if (sums.count < 100) {
    std::fprintf(stderr, "kl_divergence: only %lld tokens scored; the statistics need 100 or more\n",
                 static_cast<long long>(sums.count));
    return 0;
  }
  print_kld_statistics(summarize(sums), kld_values, p_diff_values);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moe-perplexity: perplexity and KL divergence, as llama.cpp's llama-perplexity"};
  Options o;
  app.add_option("-m,--model", o.model, "GGUF model file")->required();
  app.add_option("-f,--file", o.text_file, "text to evaluate (not needed with --kl-divergence)");
  app.add_option("-c,--ctx-size", o.n_ctx, "tokens per chunk (default 512)")->check(CLI::Range(4, 1 << 20));
  app.add_option("-b,--batch-size", o.n_batch, "most tokens per forward pass (default 2048)")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("-t,--threads", o.threads, "threads")->check(CLI::Range(1, 1024));
  app.add_option("--chunks", o.n_chunks, "evaluate at most N chunks (default: all)")->check(CLI::Range(1, 1 << 30));
  app.add_option("--kl-divergence-base,--save-all-logits", o.kld_base,
                 "file of base log-probabilities: written, or read with --kl-divergence");
  app.add_flag("--kl-divergence", o.kl_divergence,
               "KL divergence of this model from the base log-probabilities in --kl-divergence-base");
  add_run_flags(app, o.run);
  add_weight_flags(app, o.weights);
  FlagTable flags = llama_common_flags();
  flags.aliases.insert({"-nr", "--no-repack"});
  if (const int rc = parse_command_line(app, argc, argv, "moe-perplexity", flags); rc >= 0) return rc;
  o.n_ctx_given = app.count("-c") > 0;
  try {
    check_run_flags(o.run, "moe-perplexity");
    install_interrupt_handler();
    if (o.kl_divergence) return run_kl_divergence(o);
    if (o.text_file.empty()) throw_error("give the text to evaluate with -f FILE");
    return run_perplexity(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe-perplexity: error: %s\n", e.what());
    return 1;
  }
}
