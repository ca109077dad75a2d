// moe-quantize: quantizes a GGUF model the way llama.cpp's llama-quantize
// does, with or without an importance matrix: the same per-tensor types, the
// same bytes, the same metadata.
//
//   moe-quantize model.f32.gguf model.Q4_K_M.gguf Q4_K_M -t 8
//   moe-quantize in.gguf out.gguf q8_0 --tensor-type 'ffn_down=q6_k' --pure
//   moe-quantize --imatrix model.imatrix.gguf model.f32.gguf model.IQ4_XS.gguf IQ4_XS
//
// TYPE is a llama-quantize file type name (any case; Q4_K is Q4_K_M) or its
// numeric id (15). The output appears only when complete: it is written to
// a temporary file beside it and renamed at the end, and Ctrl-C leaves any
// previous file untouched. Errors print "moe-quantize: error: ..." and exit 1;
// an interruption exits 128 + the signal number.
//
// MOE_TEST_SLOW_MS=N (tests only) sleeps N ms after each tensor so that a
// test can interrupt a run halfway.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "cli/command_line.h"
#include "convert/quantize_file.h"
#include "convert/quantize_plan.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "core/output_guard.h"

namespace {

double mib(uint64_t bytes) { return static_cast<double>(bytes) / 1024.0 / 1024.0; }

double bits_per_weight(uint64_t bytes, uint64_t n) { return n == 0 ? 0.0 : 8.0 * static_cast<double>(bytes) / n; }

int run(const std::string& in, const std::string& out, const std::string& type_arg,
        const std::vector<std::string>& tensor_types, bool pure, bool allow_requantize, int threads, bool verbose,
        const moe::SplitOptions& split, const std::string& imatrix_path, const std::vector<std::string>& include,
        const std::vector<std::string>& exclude) {
  const std::optional<moe::FileType> ft = moe::parse_file_type(type_arg);
  MOE_ASSERT(ft.has_value(), "unknown quantization type '%s' (expected one of: %s; or a llama.cpp ftype id)",
             type_arg.c_str(), moe::supported_file_type_names().c_str());
  MOE_ASSERT(moe::file_type_supported(*ft), "quantization type %s is not supported by moe-quantize (supported: %s)",
             moe::file_type_name(*ft), moe::supported_file_type_names().c_str());

  // Before any work: never over the input, and a bad output path fails now.
  moe::refuse_output_over_input(out, in);
  moe::require_writable_output(out);

  MOE_ASSERT(include.empty() || exclude.empty(), "--include-weights and --exclude-weights cannot be used together");
  MOE_ASSERT(!imatrix_path.empty() || (include.empty() && exclude.empty()),
             "--include-weights / --exclude-weights select importance matrix entries: pass --imatrix FILE too");
  moe::ImportanceMatrix imatrix;
  if (!imatrix_path.empty()) {
    imatrix = moe::load_importance_matrix(imatrix_path);
    const size_t n_loaded = imatrix.weights.size();
    moe::filter_importance_matrix(imatrix, include, exclude);
    std::printf("moe-quantize: importance matrix %s: %zu entries%s, %d chunks%s%s\n", imatrix_path.c_str(),
                imatrix.weights.size(),
                n_loaded != imatrix.weights.size() ? moe::strfmt(" of %zu", n_loaded).c_str() : "",
                imatrix.chunk_count, imatrix.datasets.empty() ? "" : " of ",
                imatrix.datasets.empty() ? "" : imatrix.datasets[0].c_str());
  }

  moe::QuantizeFileOptions opts;
  if (!imatrix_path.empty()) {
    opts.imatrix = &imatrix;
    opts.imatrix_path = imatrix_path;
  }
  opts.plan.file_type = *ft;
  opts.plan.pure = pure;
  for (const std::string& tt : tensor_types) opts.plan.overrides.push_back(moe::parse_type_override(tt));
  opts.n_threads = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  opts.allow_requantize = allow_requantize;
  opts.split = split;
  opts.verbose = verbose;
  opts.progress = !verbose;  // the per-tensor lines would tear the bar apart
  if (const char* slow = std::getenv("MOE_TEST_SLOW_MS")) {
    const int ms = std::atoi(slow);
    opts.after_tensor = [ms](size_t) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); };
  }

  moe::install_interrupt_handler();
  std::printf("moe-quantize: %s -> %s as %s (file type %u), %d thread%s\n", in.c_str(), out.c_str(),
              moe::file_type_name(*ft), static_cast<unsigned>(*ft), opts.n_threads, opts.n_threads == 1 ? "" : "s");
  std::fflush(stdout);
  const moe::QuantizeFileResult r = moe::quantize_gguf_file(in, out, opts);
  std::printf("model size  = %8.2f MiB (%.2f BPW)\n", mib(r.bytes_in), bits_per_weight(r.bytes_in, r.n_elements));
  std::printf("quant size  = %8.2f MiB (%.2f BPW)\n", mib(r.bytes_out), bits_per_weight(r.bytes_out, r.n_elements));
  if (r.n_fallback > 0)
    std::printf("warning: %d of %zu tensor(s) required fallback quantization (rows not a whole number of blocks)\n",
                r.n_fallback, r.n_tensors);
  std::printf("%zu tensors in %.2f s\n", r.n_tensors, r.seconds);
  if (r.paths.size() > 1)
    for (const std::string& p : r.paths) std::printf("wrote %s\n", p.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moe-quantize: quantize a GGUF model like llama.cpp's llama-quantize"};
  std::string in, out, type;
  std::vector<std::string> tensor_types;
  bool pure = false, allow_requantize = false, verbose = false;
  int threads = 0;
  app.add_option("input", in, "input GGUF (F32, F16, BF16; quantized with --allow-requantize)")->required();
  app.add_option("output", out, "output GGUF (written to a temporary file, renamed when complete)")->required();
  app.add_option("type", type, "file type: Q4_K_M, Q8_0, F16, ... (any case) or a llama.cpp ftype id")->required();
  app.add_option("--tensor-type", tensor_types, "REGEX=TYPE: tensors whose name matches get TYPE (first match wins)")
      ->allow_extra_args(false);  // one REGEX=TYPE per --tensor-type, repeatable
  std::string imatrix_path;
  std::vector<std::string> include_weights, exclude_weights;
  app.add_option("--imatrix", imatrix_path,
                 "importance matrix (llama-imatrix's GGUF or legacy .dat) weighting each column's rounding error; "
                 "required for IQ1_*, IQ2_*, IQ3_XXS")
      ->check(CLI::ExistingFile);
  app.add_option("--include-weights", include_weights, "use importance data only for tensors whose name contains this")
      ->allow_extra_args(false);
  app.add_option("--exclude-weights", exclude_weights, "use no importance data for tensors whose name contains this")
      ->allow_extra_args(false);
  app.add_flag("--pure", pure, "no k-quant mixture: every quantizable tensor gets the type's default tensor type");
  app.add_flag("--allow-requantize", allow_requantize, "allow converting tensors that are already quantized");
  app.add_option("-t,--threads", threads, "threads (default: all cores)");
  // llama-quantize takes the thread count as a fourth positional argument.
  int trailing_threads = 0;
  app.add_option("nthreads", trailing_threads, "threads, as llama-quantize's trailing argument")
      ->check(CLI::Range(1, 1024));
  app.add_flag("-v,--verbose", verbose, "print one line per tensor");
  std::string split_size;
  moe::SplitOptions split;
  moe::add_split_flags(app, split, split_size);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "moe-quantize: error: %s\nRun with --help for more information.\n", e.what());
    return 1;
  }
  if (trailing_threads > 0) threads = trailing_threads;
  try {
    if (!split_size.empty()) split.max_bytes = moe::parse_split_size(split_size);
    return run(in, out, type, tensor_types, pure, allow_requantize, threads, verbose, split, imatrix_path,
               include_weights, exclude_weights);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "moe-quantize: error: %s\n", e.what());
    if (const int sig = moe::interrupt_signal()) return 128 + sig;
  } catch (...) {
    std::fprintf(stderr, "moe-quantize: error: unknown exception\n");
  }
  return 1;
}
