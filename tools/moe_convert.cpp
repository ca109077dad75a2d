// moe-convert: a Hugging Face DeepSeek-V2/V3 checkpoint (safetensors, F32 /
// F16 / BF16 / FP8 with block scales) to a deepseek2 GGUF, or a DeepSeek-V4
// one (FP8 weights, FP4 experts) to a deepseek4 GGUF, laid out as llama.cpp's
// convert_hf_to_gguf.py lays them out.
//
//   moe-convert HF_DIR -o OUT.gguf [--outtype f32|f16|bf16|q8_0] [--no-mtp] [-t THREADS]
//   moe-convert V4_DIR -o OUT.gguf --mtp-companion OUT-mtp.gguf   (DeepSeek-V4's MTP module, for moe -md)
#include <CLI/CLI.hpp>

#include "cli/command_line.h"
#include <chrono>
#include <cstdio>
#include <thread>

#include "convert/convert_checkpoint.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "core/output_guard.h"

int main(int argc, char** argv) {
  CLI::App app{"moe-convert: Hugging Face DeepSeek-V2/V3 checkpoint -> deepseek2 GGUF, DeepSeek-V4 -> deepseek4 GGUF"};
  std::string dir, out, outtype = "f16", name, mtp_companion;
  bool no_mtp = false;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  app.add_option("dir", dir, "checkpoint directory (config.json, *.safetensors, tokenizer.json)")->required();
  app.add_option("-o,--outfile", out, "output GGUF file")->required();
  app.add_option("--outtype", outtype, "f32, f16, bf16 or q8_0 (as convert_hf_to_gguf.py; DeepSeek-V4 keeps its FP4 experts as MXFP4, FP8 as Q8_0, BF16 and F32 as they are)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0"}))
      ->capture_default_str();
  app.add_flag("--no-mtp", no_mtp, "drop the multi-token-prediction layers (num_nextn_predict_layers)");
  app.add_option("--mtp-companion", mtp_companion,
                 "DeepSeek-V4: also write its MTP module (mtp.0.*) to this MTP companion GGUF (ik_llama.cpp's "
                 "layout; moe -md FILE)");
  app.add_option("--name", name, "general.name (default: the checkpoint directory's name)");
  app.add_option("-t,--threads", threads, "threads")->check(CLI::Range(1, 1024))->capture_default_str();
  std::string split_size;
  moe::SplitOptions split;
  moe::add_split_flags(app, split, split_size);
  if (const int rc = moe::parse_command_line(app, argc, argv, "moe-convert", moe::FlagTable{}); rc >= 0) return rc;

  try {
    moe::refuse_output_in_checkpoint(out, dir);
    moe::require_writable_output(out);
    if (!mtp_companion.empty()) {
      moe::refuse_same_outputs(out, mtp_companion, "--mtp-companion");
      moe::refuse_output_in_checkpoint(mtp_companion, dir);
      moe::require_writable_output(mtp_companion);
    }
    moe::install_interrupt_handler();
    moe::ConvertOptions o;
    o.outtype = *moe::convert_outtype_from_name(outtype);
    o.keep_mtp = !no_mtp;
    o.n_threads = threads;
    o.model_name = name;
    o.split = split;
    o.deepseek4_template_file = std::string(MOE_MODELS_DIR) + "/templates/deepseek-v4.jinja";
    o.mtp_companion = mtp_companion;
    if (!split_size.empty()) o.split.max_bytes = moe::parse_split_size(split_size);
    const auto t0 = std::chrono::steady_clock::now();
    const moe::ConvertSummary s = moe::convert_hf_checkpoint(dir, out, o);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::string written = s.paths.size() > 1 ? moe::strfmt("%zu files %s ... %s", s.paths.size(), s.paths.front().c_str(),
                                                        s.paths.back().c_str())
                                             : out;
    if (!mtp_companion.empty()) written += " (and its MTP companion " + mtp_companion + ")";
    std::fprintf(stderr, "moe-convert: wrote %s: %zu tensors, %.2f MiB of tensor data, %s, in %.2f s\n",
                 written.c_str(), s.n_tensors, s.tensor_bytes / (1024.0 * 1024.0), outtype.c_str(), secs);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe-convert: error: %s\n", e.what());
    return 1;
  }
}
