// Command-line parsing shared by `moe` and the tools, for llama.cpp users'
// habits: llama.cpp's single-dash long flags (-ngl, -ot, -ctk, ...) are
// rewritten to their double-dash names before CLI11 sees them (CLI11 would
// read "-ot" as "-o t"); llama.cpp flags we do not support are named with
// the reason, never misread; a bad flag exits 1 with one line, --help and
// --version exit 0. Header-only: the tools link the library, not the CLI.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gguf/gguf_set_writer.h"

namespace moe {

struct FlagTable {
  std::map<std::string, std::string> aliases;      // "-ngl" -> "--n-gpu-layers"
  std::map<std::string, std::string> unsupported;  // "-hf" -> why, and what to do instead
  std::set<std::string> takes_text;                // options whose value may look like a flag (-p, --stop)
};

// -md / --model-draft as a flag of the program's own (moe, moe-bench: a
// deepseek4 model's MTP companion file) instead of a refused one.
inline void take_model_draft_flag(FlagTable& t) {
  t.unsupported.erase("-md");
  t.unsupported.erase("--model-draft");
  t.aliases.insert({"-md", "--model-draft"});
}

// What every program that runs a model shares.
inline FlagTable llama_common_flags() {
  FlagTable t;
  t.aliases = {{"-ncmoe", "--n-cpu-moe"},    {"-cmoe", "--cpu-moe"},        {"-ot", "--override-tensor"},
               {"-ngl", "--n-gpu-layers"},   {"--gpu-layers", "--n-gpu-layers"}, {"-fa", "--flash-attn"},
               {"-ctk", "--cache-type-k"},   {"-ctv", "--cache-type-v"},    {"-ub", "--ubatch-size"},
               {"-tb", "--threads-batch"},   {"-dev", "--device"}};
  const std::string no_download = "downloads are not supported (no network access is assumed): give a model file "
                                  "with -m";
  for (const char* f : {"-hf", "-hfr", "--hf-repo", "-hff", "--hf-file", "-hft", "--hf-token", "-mu", "--model-url",
                        "-hfd", "-hfrd", "--hf-repo-draft", "-dr", "--docker-repo"})
    t.unsupported[f] = no_download;
  for (const char* f : {"-md", "--model-draft", "-cd", "--ctx-size-draft", "-ngld", "--gpu-layers-draft"})
    t.unsupported[f] = "separate draft models are not supported: draft with the model's own MTP module "
                       "(--spec-type draft-mtp)";
  for (const char* f : {"--lora", "--lora-scaled", "--lora-init-without-apply", "--control-vector",
                        "--control-vector-scaled", "--control-vector-layer-range"})
    t.unsupported[f] = "adapters and control vectors are not supported";
  for (const char* f : {"--grammar", "--grammar-file", "-j", "--json-schema", "-jf", "--json-schema-file"})
    t.unsupported[f] = "grammar-constrained sampling is not supported";
  for (const char* f : {"-mm", "--mmproj", "-mmu", "--mmproj-url", "--image"})
    t.unsupported[f] = "multimodal projectors are not supported (DeepSeek MoE models are text-only)";
  for (const char* f : {"-sm", "--split-mode", "-ts", "--tensor-split", "-mg", "--main-gpu"})
    t.unsupported[f] = "multi-GPU splits are not supported: one GPU, with the experts that do not fit on the CPU "
                       "(--n-cpu-moe, --gpu-mem)";
  for (const char* f : {"--rope-scaling", "--rope-scale", "--rope-freq-base", "--rope-freq-scale", "--yarn-orig-ctx",
                        "--yarn-ext-factor", "--yarn-attn-factor", "--yarn-beta-slow", "--yarn-beta-fast"})
    t.unsupported[f] = "RoPE and YaRN settings come from the model file";
  t.unsupported["--jinja"] = "chat templates are built in: the model's is recognised, or choose one with "
                             "--chat-template";
  for (const char* f : {"--numa", "-nkvo", "--no-kv-offload", "-cb", "--cont-batching", "--rpc"})
    t.unsupported[f] = "not supported";
  t.takes_text = {"-p", "--prompt", "--stop", "-r", "--reverse-prompt", "--system", "-sys", "--system-prompt",
                  "-f", "--file", "-m", "--model"};
  return t;
}

// llama-gguf-split's flags on the tools that write sets: --split-max-tensors
// into split, --split-max-size's text into size_text (parse_split_size
// after parsing, so a bad size is the tool's error, not CLI11's).
inline void add_split_flags(CLI::App& app, SplitOptions& split, std::string& size_text) {
  app.add_option("--split-max-tensors", split.max_tensors,
                 "write a gguf-split set (OUT-00001-of-0000N.gguf ...) of at most N tensors per file")
      ->check(CLI::Range(1, 1 << 30));
  app.add_option("--split-max-size", size_text, "write a gguf-split set of files of at most N(M|G) bytes each");
}

// Parses argc/argv into app. Returns -1 to go on, or the exit code: 0 after
// --help or --version, 1 after printing "program: error: ..." for a bad flag.
inline int parse_command_line(CLI::App& app, int argc, char** argv, const char* program, const FlagTable& table) {
  std::vector<std::string> args;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    const bool is_value = i > 1 && table.takes_text.count(argv[i - 1]) > 0;
    if (i > 0 && !is_value && a.size() > 1 && a[0] == '-') {
      const size_t eq = a.find('=');
      const std::string name = a.substr(0, eq);
      if (const auto u = table.unsupported.find(name); u != table.unsupported.end()) {
        std::fprintf(stderr, "%s: error: %s is not supported: %s\n", program, name.c_str(), u->second.c_str());
        return 1;
      }
      if (const auto it = table.aliases.find(name); it != table.aliases.end())
        a = it->second + (eq == std::string::npos ? "" : a.substr(eq));
    }
    args.push_back(std::move(a));
  }
  std::vector<char*> ptrs;
  for (std::string& a : args) ptrs.push_back(a.data());
  ptrs.push_back(nullptr);
  try {
    app.parse(static_cast<int>(args.size()), ptrs.data());
  } catch (const CLI::CallForHelp& e) {
    app.exit(e);
    return 0;
  } catch (const CLI::CallForAllHelp& e) {
    app.exit(e);
    return 0;
  } catch (const CLI::CallForVersion& e) {
    app.exit(e);
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: error: %s\nRun with --help for more information.\n", program, e.what());
    return 1;
  }
  return -1;
}

}  // namespace moe
