// The model a tool was given, whichever of the two families its file holds
// (deepseek2/deepseek32, or deepseek4), sessions over it behind the one
// InferenceSession interface, and what every program prints of a session
// (its placement, its routing statistics). Header-only, as run_flags.h,
// because the tools link the library but not the CLI.
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

inline bool is_deepseek4_file(const std::string& path) {
  return GgufFile::open(path).get_string_opt("general.architecture").value_or("") == "deepseek4";
}

class ToolModel {
 public:
  // Loads either family.
  static ToolModel load(const std::string& path, const WeightFlags& weights) {
    ToolModel m;
    if (is_deepseek4_file(path)) {
      m.v4_ = Deepseek4Model::load(path, weights.memory);
    } else {
      m.v2_ = Deepseek2Model::load(path, weights.memory, weights.repack_here());
    }
    return m;
  }

  const GgufFile& file() const { return v4_ ? v4_->file() : v2_->file(); }
  int64_t n_vocab() const { return v4_ ? v4_->config().vocab_size : v2_->config().vocab_size; }

  // One sequence with the context, batch, cache type, backends and
  // placement of `so`.
  std::unique_ptr<InferenceSession> session(const SessionOptions& so) const {
    if (v4_) return std::make_unique<Deepseek4Session>(*v4_, so);
    return std::make_unique<Deepseek2Session>(*v2_, so);
  }

 private:
  std::unique_ptr<Deepseek2Model> v2_;
  std::unique_ptr<Deepseek4Model> v4_;
};

// fn(the session as its model's own type), for what both have
// (placement(), expert_stats()); false for any other session.
template <typename Fn>
bool with_model_session(const InferenceSession& s, Fn&& fn) {
  if (const auto* d2 = dynamic_cast<const Deepseek2Session*>(&s)) return fn(*d2), true;
  if (const auto* d4 = dynamic_cast<const Deepseek4Session*>(&s)) return fn(*d4), true;
  return false;
}

// The placement plan on stderr, a line each, prefixed "program: ".
inline void print_placement(const InferenceSession& s, const char* program) {
  with_model_session(s, [&](const auto& m) {
    const std::string text = m.placement().describe();
    size_t begin = 0;
    while (begin < text.size()) {
      const size_t end = text.find('\n', begin);
      std::fprintf(stderr, "%s: %s\n", program, text.substr(begin, end - begin).c_str());
      begin = end == std::string::npos ? text.size() : end + 1;
    }
  });
}

// After a run: the routing statistics, when asked for.
inline void write_expert_stats(const RunFlags& f, const InferenceSession& s, const char* program) {
  if (f.record_stats.empty()) return;
  if (with_model_session(s, [&](const auto& m) { m.expert_stats().write(f.record_stats); }))
    std::fprintf(stderr, "%s: expert statistics written to %s\n", program, f.record_stats.c_str());
}

}  // namespace moe
