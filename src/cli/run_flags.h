// The flags every program that runs a model shares (moe, moe-bench,
// moe-perplexity, moe-logits): which backends, where the weights go, and
// routing statistics. Spelled as llama.cpp spells them where it has them:
// --n-cpu-moe/-ncmoe, --cpu-moe/-cmoe, -ot/--override-tensor. Header-only so
// that the tools, which link the library but not the CLI, can use it.
#pragma once

#include <CLI/CLI.hpp>

#include <utility>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/deepseek2.h"
#include "core/weight_memory.h"
#include "runtime/backend_registry.h"
#include "runtime/expert_placement.h"

namespace moe {

// Where the weights live on the host and in which layout (moe,
// moe-perplexity; moe-bench spells them llama-bench's way, -mmp 0|1 and
// --repack 0|1): --mmap / --no-mmap (default: core/weight_memory.h),
// --repack / --no-repack (-nr; model/repacked_tensors.h).
struct WeightFlags {
  WeightMemory memory = WeightMemory::kAuto;
  bool repack = true;
  // Repack at load: asked for, and this CPU has the kernels.
  bool repack_here() const { return repack && host_reads_repacked_weights(); }
};

inline void add_weight_flags(CLI::App& app, WeightFlags& f) {
  app.add_flag_callback("--mmap", [&f] { f.memory = WeightMemory::kMap; },
                        "map the model from the file (default: read it into memory when twice its size fits in the "
                        "available memory, which generates faster; map it otherwise)");
  app.add_flag_callback("--no-mmap", [&f] { f.memory = WeightMemory::kRead; },
                        "read the model into memory instead of mapping it");
  app.add_flag("--repack,!--no-repack", f.repack,
               "-nr: with the model read into memory, repack its Q4_K/Q5_0/Q8_0 experts and layer products for this CPU's kernels "
               "(default: on where the CPU has them, AVX-512 VNNI; a mapped model keeps the file's layout)");
}

struct RunFlags {
  std::string device = "cpu";
  int n_gpu_layers = -1;            // -ngl; -1: not given
  std::string flash_attn;           // -fa [on|off|auto]: accepted, MLA attention is fused either way
  // -ctk: the latent cache's type. -ctv: MLA caches no separate values (they
  // are read from the latent), so it may only repeat -ctk.
  std::string cache_type_k = "f32", cache_type_v;
  std::string gpu_mem;  // --gpu-mem SIZE, "" for the device's default
  int device_threads = 0;
  PlacementOptions placement;
  std::string record_stats;  // --record-expert-stats FILE

  // The session options these flags ask for, with n_threads host threads.
  SessionOptions session(int64_t n_ctx, int64_t n_batch, int n_threads) const {
    SessionOptions o;
    o.n_ctx = n_ctx;
    o.n_batch = n_batch;
    o.cache_type = parse_latent_type(cache_type_k, "-ctk");
    o.backends.device = device == "none" ? "cpu" : device.rfind("cuda", 0) == 0 ? "cuda" : device;
    o.backends.n_threads = n_threads;
    o.backends.device_threads = device_threads;
    o.backends.device_mem = gpu_mem.empty() ? -1 : parse_byte_size(gpu_mem);
    o.placement = placement;
    o.placement.n_gpu_layers = n_gpu_layers;
    return o;
  }
};

// After parsing: refuses what cannot run and warns about what changes
// nothing here (llama.cpp habits). Throws naming the flag.
inline void check_run_flags(const RunFlags& f, const char* program) {
  parse_latent_type(f.cache_type_k, "-ctk");
  if (!f.cache_type_v.empty() && f.cache_type_v != f.cache_type_k)
    throw_error("-ctv %s: MLA keeps one latent cache, whose type is -ctk (%s); give -ctk alone",
                f.cache_type_v.c_str(), f.cache_type_k.c_str());
  if (!f.flash_attn.empty() && f.flash_attn != "on" && f.flash_attn != "off" && f.flash_attn != "auto" &&
      f.flash_attn != "1" && f.flash_attn != "0")
    throw_error("-fa '%s': expected on, off or auto", f.flash_attn.c_str());
  if (f.n_gpu_layers > 0 && (f.device == "cpu" || f.device == "none"))
    std::fprintf(stderr, "%s: warning: no GPU backend in this run: -ngl %d is ignored, everything runs on the CPU\n",
                 program, f.n_gpu_layers);
}

inline void add_run_flags(CLI::App& app, RunFlags& f) {
  app.add_option("--device", f.device, "where the model runs: cpu (cuda: not built yet; also -dev, none = cpu)")
      ->check(CLI::IsMember({"cpu", "none", "cuda", "cuda0", "CUDA0", "cpu-device"}));
  app.add_option("--n-gpu-layers", f.n_gpu_layers,
                 "-ngl N: 0 runs everything on the CPU; N below the layer count keeps the routed experts of the "
                 "first layers on the CPU")
      ->check(CLI::Range(-1, 1 << 20));
  app.add_option("--flash-attn", f.flash_attn, "-fa [on|off|auto]: accepted; MLA attention is computed fused either way")
      ->expected(0, 1);
  app.add_option("--cache-type-k", f.cache_type_k,
                 "-ctk: latent cache type: f32 (default), f16 or bf16 (half the memory), q8_0 (27% of it)");
  app.add_option("--cache-type-v", f.cache_type_v, "-ctv: accepted when it equals -ctk (MLA has one latent cache)");
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

}  // namespace moe
