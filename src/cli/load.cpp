// Loading for every mode of `moe`: the model, its tokenizer, the context
// size, and the chat template.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/options.h"
#include "cli/tool_model.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "runtime/context_size.h"

namespace moe {

namespace {

// Loading is an mmap: the bytes come in from disk when first touched. On a
// terminal, large files are read in up front under a progress bar instead;
// small files (and scripts, logs) skip this.
void prefetch_with_progress(const GgufFile& f) {
  constexpr uint64_t kMinBytes = uint64_t(256) << 20;
  if (f.total_size() < kMinBytes || !isatty(fileno(stderr))) return;
  ProgressBar bar("loading", f.total_size());
  for (const GgufShard& s : f.shards())  // every file of a gguf-split set
    MappedFile::prefetch(s.data, s.size, [&](uint64_t bytes) { bar.advance(bytes); });
  bar.finish();
}

// DeepSeek-V4's MTP module comes from a companion file (-md).
void check_deepseek4_flags(const CliOptions& o) {
  if (spec_draft_n(o) > 0 && o.model_draft.empty())
    throw_error("%s: --spec-type draft-mtp: deepseek4 keeps its MTP module in a companion GGUF (ik_llama.cpp's "
                "layout); give it with -md FILE",
                o.model.c_str());
}

LoadedModel load_deepseek4(const CliOptions& o, std::chrono::steady_clock::time_point t0) {
  check_deepseek4_flags(o);
  auto model = Deepseek4Model::load(o.model, o.weights.memory);
  if (!o.model_draft.empty()) model->attach_mtp(o.model_draft);
  if (!o.quiet) prefetch_with_progress(model->file());
  Tokenizer tok = Tokenizer::from_gguf(model->file());
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t model_ctx = model->config().max_position_embeddings;
  int64_t n_ctx = o.n_ctx_given ? o.n_ctx : std::min<int64_t>(o.n_ctx, model_ctx);
  const uint64_t avail = mem_available_bytes();
  if (avail > 0 || n_ctx == 0) {
    // Each sequence holds its rings whatever the context, and its blocks' rows per position.
    const LatentType type = parse_latent_type(o.run.cache_type_k, "-ctk");
    const uint64_t fixed =
        static_cast<uint64_t>(model->cache_bytes_fixed(o.n_batch, type)) * static_cast<uint64_t>(o.n_parallel);
    uint64_t left = avail > 0 ? memory_for_caches(avail, model->file().total_size()) : UINT64_MAX;
    left = left > fixed ? left - fixed : 0;
    const ContextChoice c = choose_context(n_ctx, model_ctx, model->cache_bytes_per_token(type), o.n_parallel, left);
    n_ctx = c.n_ctx;
    if (!c.notice.empty() && !o.quiet) std::fprintf(stderr, "moe: %s\n", c.notice.c_str());
  }
  LoadedModel m{nullptr, std::move(model), std::move(tok), n_ctx, load_s};
  return m;
}

}  // namespace

LoadedModel load_model(const CliOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  if (is_deepseek4_file(o.model))
    return load_deepseek4(o, t0);
  if (!o.model_draft.empty())
    throw_error("-md %s: separate draft models are not supported, only a deepseek4 model's MTP companion file; %s "
                "drafts with its own MTP module (--spec-type draft-mtp)",
                o.model_draft.c_str(), o.model.c_str());
  auto model = Deepseek2Model::load(o.model, o.weights.memory, o.weights.repack_here());
  if (o.mlock)
    for (const MappedFile* m : model->file().mappings()) {
      const std::string why = m->lock();
      if (!why.empty()) std::fprintf(stderr, "moe: warning: --mlock: cannot lock %s in RAM: %s\n", m->path().c_str(), why.c_str());
    }
  if (!o.quiet && !model->weights_read()) prefetch_with_progress(model->file());
  Tokenizer tok = Tokenizer::from_gguf(model->file());
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!o.model_given && !o.quiet)
    std::fprintf(stderr, "moe: no model given (-m): using the built-in default model %s\n", o.model.c_str());
  // -c 0: the model's training context, fitted to memory. A larger -c is
  // allowed, as in llama.cpp, with a warning; the default (4096) is cut to a
  // smaller model's. Every sequence (-np) has a cache of the whole context
  // (Ollama's rule, not llama.cpp's split of -c), so an answer never depends
  // on -np. Caches that cannot fit are refused here, before any work (on a
  // device the placement planner checks its memory instead).
  const int64_t model_ctx = model->config().max_position_embeddings;
  int64_t n_ctx = o.n_ctx_given ? o.n_ctx : std::min<int64_t>(o.n_ctx, model_ctx);
  if (o.n_ctx_given && n_ctx > model_ctx && !o.quiet)
    std::fprintf(stderr, "moe: warning: -c %lld is more than the model was trained for (%lld tokens): text past "
                 "%lld tokens may degrade\n", static_cast<long long>(n_ctx), static_cast<long long>(model_ctx),
                 static_cast<long long>(model_ctx));
  const bool on_device = o.run.device.rfind("cuda", 0) == 0;
  const uint64_t avail = mem_available_bytes();
  if (!on_device && (avail > 0 || n_ctx == 0)) {
    const uint64_t left =
        avail > 0 ? memory_for_caches(avail, model->weights_read() ? 0 : model->file().total_size()) : UINT64_MAX;
    const LatentType type = parse_latent_type(o.run.cache_type_k, "-ctk");
    ContextChoice c = choose_context(n_ctx, model_ctx, model->kv_cache_bytes(1, type), o.n_parallel, left);
    if (c.n_ctx < model_ctx && n_ctx == 0 && type != LatentType::kQ8_0)  // -c 0 fell short: say what q8_0 gives
      c.notice += strfmt("; -ctk q8_0 gives %lld",
                         static_cast<long long>(choose_context(0, model_ctx, model->kv_cache_bytes(1, LatentType::kQ8_0),
                                                               o.n_parallel, left).n_ctx));
    n_ctx = c.n_ctx;
    if (!c.notice.empty() && !o.quiet) std::fprintf(stderr, "moe: %s\n", c.notice.c_str());
  }
  return LoadedModel{std::move(model), nullptr, std::move(tok), n_ctx, load_s};
}

std::string spec_stats_text(int64_t drafted, int64_t accepted) {
  if (drafted <= 0) return "";
  return strfmt(" | drafts %lld of %lld accepted (%.0f%%)", static_cast<long long>(accepted),
                static_cast<long long>(drafted), 100.0 * static_cast<double>(accepted) / static_cast<double>(drafted));
}

std::unique_ptr<InferenceSession> make_session(const CliOptions& o, const LoadedModel& m) {
  SessionOptions so = o.run.session(m.n_ctx, o.n_batch, o.n_threads);
  so.n_seq = o.n_parallel;  // caches checked against memory in load_model
  so.mtp = spec_draft_n(o) > 0;
  if (m.v4) {
    auto s = std::make_unique<Deepseek4Session>(*m.v4, so);
    if (!o.quiet) print_placement(*s, "moe");
    if (o.verbose)
      std::fprintf(stderr,
                   "moe: %s | context %lld | batch %d | model %s | cache (%s) %zu bytes per token + %zu per sequence\n",
                   s->backends_description().c_str(), static_cast<long long>(m.n_ctx), o.n_batch,
                   m.v4->config().describe().c_str(), latent_type_name(so.cache_type),
                   m.v4->cache_bytes_per_token(so.cache_type), m.v4->cache_bytes_fixed(o.n_batch, so.cache_type));
    return s;
  }
  auto s = std::make_unique<Deepseek2Session>(*m.model, so);
  if (!o.quiet) print_placement(*s, "moe");
  if (o.verbose)
    std::fprintf(stderr, "moe: %s | context %lld | batch %d | model %s\n", s->backends_description().c_str(),
                 static_cast<long long>(m.n_ctx), o.n_batch, m.model->config().describe().c_str());
  return s;
}

namespace {

ChatTemplate chat_template_chosen(const CliOptions& o, const LoadedModel& m) {
  const Tokenizer& tok = m.tok;
  std::string bos = tok.bos() >= 0 ? tok.token_to_piece(tok.bos(), true) : std::string();
  std::string eos = tok.eos() >= 0 ? tok.token_to_piece(tok.eos(), true) : std::string();
  const auto source = m.file().get_string_opt("tokenizer.chat_template");
  if (!o.chat_template.empty()) {
    const auto family = chat_family_from_name(o.chat_template);
    if (!family)
      throw_error("unknown --chat-template '%s' (expected one of: %s)", o.chat_template.c_str(),
                  chat_family_names().c_str());
    // Take Qwen2's default system prompt from the model's own template when it is ChatML too.
    if (source && chat_family_detect(*source) == family) return ChatTemplate::for_source(*source, bos, eos);
    return ChatTemplate(*family, std::move(bos), std::move(eos));
  }
  // DeepSeek-V3.2 ships its conversation format as a Python script, not as
  // Jinja, so its files usually carry no template: the architecture says it.
  if (!source && m.architecture() == "deepseek32")
    return ChatTemplate(ChatFamily::deepseek32, std::move(bos), std::move(eos));
  if (!source && m.architecture() == "deepseek4")
    return ChatTemplate(ChatFamily::deepseek4, std::move(bos), std::move(eos));
  if (!source)
    throw_error("%s has no tokenizer.chat_template; choose one with --chat-template (%s)", o.model.c_str(),
                chat_family_names().c_str());
  return ChatTemplate::for_source(*source, std::move(bos), std::move(eos));
}

}  // namespace

ChatTemplate chat_template_for(const CliOptions& o, const LoadedModel& m) {
  ChatTemplate t = chat_template_chosen(o, m);
  t.set_thinking(o.reasoning_budget != 0);
  if (o.chat_template_kwargs.empty()) return t;
  nlohmann::json kw;
  try {
    kw = nlohmann::json::parse(o.chat_template_kwargs);
  } catch (const nlohmann::json::exception& e) {
    throw_error("--chat-template-kwargs: not valid JSON: %s", e.what());
  }
  if (!kw.is_object()) throw_error("--chat-template-kwargs: expected a JSON object, got '%s'", o.chat_template_kwargs.c_str());
  for (const auto& [key, value] : kw.items()) {
    if (key == "enable_thinking" || key == "thinking") {
      if (!value.is_boolean()) throw_error("--chat-template-kwargs: %s must be true or false", key.c_str());
      t.set_thinking(value.get<bool>());
    } else if (key == "reasoning_effort") {
      if (!value.is_string() || (value != "max" && value != "high"))
        throw_error("--chat-template-kwargs: reasoning_effort must be \"max\" or \"high\"");
      t.set_reasoning_effort(value.get<std::string>());
    } else if (!o.quiet) {
      std::fprintf(stderr, "moe: warning: --chat-template-kwargs: '%s' changes nothing in the %s template\n",
                   key.c_str(), chat_family_name(t.family()));
    }
  }
  return t;
}

}  // namespace moe
