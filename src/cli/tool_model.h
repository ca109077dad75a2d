// The model a tool was given, whichever of the two families its file holds
// (deepseek2/deepseek32, or deepseek4), and sessions over it behind the one
// InferenceSession interface. For the tools that run a whole text or prompt
// (moe-perplexity, moe-logits); header-only, as run_flags.h, because the
// tools link the library but not the CLI.
#pragma once

#include <memory>
#include <string>

#include "cli/run_flags.h"
#include "core/error.h"
#include "gguf/gguf_reader.h"
#include "model/deepseek2.h"
#include "model/deepseek4.h"
#include "runtime/inference_session.h"

namespace moe {

// DeepSeek-V4 runs on the CPU backend alone and keeps no routing statistics
// yet: the run flags that ask for either are refused before any work,
// naming the flag (moe, moe-perplexity, moe-logits).
inline void refuse_deepseek4_run_flags(const RunFlags& run, const std::string& model_path) {
  auto refuse = [&](bool given, const char* flag) {
    if (given) throw_error("%s: %s is not supported for deepseek4 models yet", model_path.c_str(), flag);
  };
  refuse(run.device != "cpu" && run.device != "none", "--device (deepseek4 runs on the CPU)");
  refuse(!run.record_stats.empty(), "--record-expert-stats");
  refuse(!run.placement.expert_stats_file.empty(), "--expert-stats");
}

inline bool is_deepseek4_file(const std::string& path) {
  return GgufFile::open(path).get_string_opt("general.architecture").value_or("") == "deepseek4";
}

class ToolModel {
 public:
  // Loads either family; a deepseek4 file first has its flags checked.
  static ToolModel load(const std::string& path, const WeightFlags& weights, const RunFlags& run) {
    ToolModel m;
    if (is_deepseek4_file(path)) {
      refuse_deepseek4_run_flags(run, path);
      m.v4_ = Deepseek4Model::load(path, weights.memory);
    } else {
      m.v2_ = Deepseek2Model::load(path, weights.memory, weights.repack_here());
    }
    return m;
  }

  const GgufFile& file() const { return v4_ ? v4_->file() : v2_->file(); }
  int64_t n_vocab() const { return v4_ ? v4_->config().vocab_size : v2_->config().vocab_size; }

  // One sequence with the context, batch, threads and cache type of `so`
  // (and, for deepseek2, its backends and placement).
  std::unique_ptr<InferenceSession> session(const SessionOptions& so) const {
    if (v4_) return std::make_unique<Deepseek4Session>(*v4_, so.n_ctx, so.n_batch, so.backends, 1, so.cache_type);
    return std::make_unique<Deepseek2Session>(*v2_, so);
  }

 private:
  std::unique_ptr<Deepseek2Model> v2_;
  std::unique_ptr<Deepseek4Model> v4_;
};

// The placement plan and, after a run, the routing statistics of a
// deepseek2 session (a deepseek4 session has neither; its flags were refused).
inline void print_placement(InferenceSession& s, const char* program) {
  if (const auto* d2 = dynamic_cast<const Deepseek2Session*>(&s)) print_placement(*d2, program);
}
inline void write_expert_stats(const RunFlags& f, InferenceSession& s, const char* program) {
  if (const auto* d2 = dynamic_cast<const Deepseek2Session*>(&s)) write_expert_stats(f, *d2, program);
}

}  // namespace moe
