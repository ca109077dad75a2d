// The flags every program that runs a model shares (moe, moe-bench,
// moe-perplexity, moe-logits): which backends, where the weights go, and
// routing statistics. Spelled as llama.cpp spells them where it has them:
// --n-cpu-moe/-ncmoe, --cpu-moe/-cmoe, -ot/--override-tensor. Header-only so
// that the tools, which link the library but not the CLI, can use it.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/deepseek2.h"
#include "runtime/expert_placement.h"

namespace moe {

struct RunFlags {
  std::string device = "cpu";
  std::string gpu_mem;  // --gpu-mem SIZE, "" for the device's default
  int device_threads = 0;
  PlacementOptions placement;
  std::string record_stats;  // --record-expert-stats FILE

  // The session options these flags ask for, with n_threads host threads.
  SessionOptions session(int64_t n_ctx, int64_t n_batch, int n_threads) const {
    SessionOptions o;
    o.n_ctx = n_ctx;
    o.n_batch = n_batch;
    o.backends.device = device;
    o.backends.n_threads = n_threads;
    o.backends.device_threads = device_threads;
    o.backends.device_mem = gpu_mem.empty() ? -1 : parse_byte_size(gpu_mem);
    o.placement = placement;
    return o;
  }
};

inline void add_run_flags(CLI::App& app, RunFlags& f) {
  app.add_option("--device", f.device, "where the model runs: cpu (cuda: not built yet)")
      ->check(CLI::IsMember({"cpu", "cuda", "cpu-device"}));
  app.add_option("--gpu-mem", f.gpu_mem, "device memory the weights and KV cache may use (e.g. 20G); the rest of "
                                         "the routed experts stay on the CPU");
  app.add_option("--n-cpu-moe", f.placement.n_cpu_moe, "keep the routed experts of the first N layers on the CPU (-ncmoe)")
      ->check(CLI::Range(0, 1 << 20));
  app.add_flag("--cpu-moe", f.placement.cpu_moe, "keep every routed expert on the CPU (-cmoe)");
  app.add_option("--override-tensor", f.placement.overrides,
                 "REGEX=BACKEND: tensors whose name matches go to BACKEND (CPU or CUDA0); repeatable (-ot)")
      ->allow_extra_args(false);
  app.add_option("--expert-stats", f.placement.expert_stats_file,
                 "place the most used routed experts on the device first, from a file written by --record-expert-stats");
  app.add_option("--record-expert-stats", f.record_stats,
                 "write how often each routed expert was chosen to FILE (JSON) at the end of the run");
  // The stand-in device's threads (tests of the hybrid path).
  app.add_option("--device-threads", f.device_threads, "threads of --device cpu-device")->group("");
}

// llama.cpp's single-dash long flags, rewritten to their double-dash names
// before CLI11 (which reads "-ot" as "-o t"). `extra` adds a program's own.
class LlamaFlagArgs {
 public:
  LlamaFlagArgs(int argc, char** argv, const std::map<std::string, std::string>& extra = {}) {
    std::map<std::string, std::string> aliases = {
        {"-ncmoe", "--n-cpu-moe"}, {"-cmoe", "--cpu-moe"}, {"-ot", "--override-tensor"}};
    aliases.insert(extra.begin(), extra.end());
    for (int i = 0; i < argc; ++i) {
      std::string a = argv[i];
      if (i > 0) {
        const size_t eq = a.find('=');
        const auto it = aliases.find(a.substr(0, eq));
        if (it != aliases.end()) a = it->second + (eq == std::string::npos ? "" : a.substr(eq));
      }
      args_.push_back(std::move(a));
    }
    for (std::string& a : args_) ptrs_.push_back(a.data());
    ptrs_.push_back(nullptr);
  }
  int argc() const { return static_cast<int>(args_.size()); }
  char** argv() { return ptrs_.data(); }

 private:
  std::vector<std::string> args_;
  std::vector<char*> ptrs_;
};

// The placement plan on stderr, a line each, prefixed "program: ".
inline void print_placement(const Deepseek2Session& s, const char* program) {
  const std::string text = s.placement().describe();
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t end = text.find('\n', begin);
    std::fprintf(stderr, "%s: %s\n", program, text.substr(begin, end - begin).c_str());
    begin = end == std::string::npos ? text.size() : end + 1;
  }
}

// After a run: the routing statistics, when asked for.
inline void write_expert_stats(const RunFlags& f, const Deepseek2Session& s, const char* program) {
  if (f.record_stats.empty()) return;
  s.expert_stats().write(f.record_stats);
  std::fprintf(stderr, "%s: expert statistics written to %s\n", program, f.record_stats.c_str());
}

}  // namespace moe
