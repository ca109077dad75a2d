// moe-synth: a deepseek2 GGUF with random weights of a real DeepSeek shape,
// for speed and placement benchmarks (see src/convert/synth_model.h).
//
//   moe-synth --config v2-lite -o v2lite.Q4_K_M.gguf --type Q4_K_M
//   moe-synth --config v3 --layers 5 -o v3-5l.gguf --type Q4_K_M --hot-experts zipf:1.1
//   moe-synth --config v2-lite -o v2lite-iq2.gguf --tensor-type exps=iq2_xxs   (IQ experts: random blocks)
#include <CLI/CLI.hpp>

#include "cli/command_line.h"

#include <chrono>
#include <cstdio>

#include "convert/synth_model.h"
#include "core/error.h"
#include "core/interrupt.h"

using namespace moe;

int main(int argc, char** argv) {
  CLI::App app{"moe-synth: a DeepSeek-shaped GGUF with random weights"};
  SynthOptions o;
  o.models_dir = MOE_MODELS_DIR;
  std::string type = "Q4_K_M", hot;
  app.add_option("--config", o.config, "built-in config (v2-lite, v2, v3, v3.2, v4-flash, v4-pro, kimi-k2, glm-4.7-flash), a config.json, or a checkpoint directory")
      ->required();
  app.add_option("-o,--out", o.out, "output GGUF file")->required();
  app.add_option("--type", type, "file type as llama-quantize names it (Q4_K_M, Q8_0, F16, ...)");
  app.add_option("--layers", o.layers, "keep only the first N layers (0: all)")->check(CLI::Range(0, 1 << 16));
  app.add_option("--seed", o.seed, "random seed (the file is a function of it)");
  app.add_flag("--mtp", o.mtp, "write a multi-token-prediction module after the layers (as DeepSeek-V3 ships one), "
                               "for measuring speculative decoding at real shapes");
  app.add_option("--mtp-companion", o.mtp_out,
                 "DeepSeek-V4: write its MTP module to this companion GGUF (ik_llama.cpp's layout; moe -md FILE)");
  app.add_option("--hot-experts", hot, "skew expert popularity: zipf:S (e.g. zipf:1.1)");
  app.add_option("--vocab", o.vocab, "GGUF file whose tokenizer to use (default: models/deepseek-v3-vocab.gguf)");
  app.add_option("--models-dir", o.models_dir, "where the built-in configs and vocabulary are");
  std::vector<std::string> tensor_types;
  app.add_option("--tensor-type", tensor_types,
                 "REGEX=TYPE: tensors whose name matches get TYPE (as llama-quantize); IQ types get random blocks")
      ->allow_extra_args(false);
  if (const int rc = moe::parse_command_line(app, argc, argv, "moe-synth", moe::FlagTable{}); rc >= 0) return rc;
  try {
    const auto ft = parse_file_type(type);
    if (!ft || !file_type_supported(*ft))
      throw_error("--type '%s' is not a file type moe-synth can write (%s)", type.c_str(), supported_file_type_names().c_str());
    o.file_type = *ft;
    for (const std::string& tt : tensor_types) o.overrides.push_back(parse_type_override(tt, /*any_computable=*/true));
    if (!hot.empty()) {
      if (hot.rfind("zipf:", 0) != 0) throw_error("--hot-experts '%s': expected zipf:S", hot.c_str());
      char* end = nullptr;
      o.hot_zipf = std::strtod(hot.c_str() + 5, &end);
      if (end == hot.c_str() + 5 || *end != '\0' || !(o.hot_zipf > 0.0 && o.hot_zipf < 16.0))
        throw_error("--hot-experts '%s': S must be a number in (0, 16)", hot.c_str());
    }
    if (!o.mtp_out.empty()) o.mtp = true;
    install_interrupt_handler();
    const auto t0 = std::chrono::steady_clock::now();
    const SynthReport r = synthesize_model(o);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string what = o.mtp_out.empty() ? o.out : o.out + " and its MTP companion " + o.mtp_out;
    std::fprintf(stderr, "moe-synth: wrote %s: %lld tensors, %.2f B parameters, %.2f GiB, %s, in %.1f s\n", what.c_str(),
                 static_cast<long long>(r.n_tensors), static_cast<double>(r.n_params) / 1e9,
                 static_cast<double>(r.bytes) / (1024.0 * 1024.0 * 1024.0), file_type_name(o.file_type), s);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe-synth: error: %s\n", e.what());
    return 1;
  }
}
