#include "cli/prompt_cache.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/output_guard.h"

namespace moe {

namespace {

PromptCacheShape shape_of(const Deepseek2Session& s) {
  const Deepseek2Model& m = s.model();
  PromptCacheShape p;
  p.model_id = m.fingerprint();
  p.model_name = m.file().get_string_opt("general.name").value_or(m.file().path());
  p.latent_type = static_cast<uint32_t>(s.cache_type());
  p.n_layers = static_cast<uint32_t>(m.config().num_hidden_layers);
  p.row_floats = static_cast<uint32_t>(s.cache_row_floats());
  p.n_ctx = s.n_ctx();
  p.n_vocab = s.n_vocab();
  return p;
}

}  // namespace

PromptCacheData prompt_cache_read(const std::string& path, const Deepseek2Session& s) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw_error("prompt cache '%s' is a directory", path.c_str());
  std::ifstream f(path, std::ios::binary);
  if (!f) throw_error("cannot open prompt cache '%s'", path.c_str());
  std::stringstream ss;
  ss << f.rdbuf();
  if (!f) throw_error("cannot read prompt cache '%s'", path.c_str());
  return decode_prompt_cache(ss.str(), shape_of(s), "'" + path + "'");
}

int64_t prompt_cache_load(const std::string& path, Deepseek2Session& s, const std::vector<int32_t>& tokens) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return 0;
  const PromptCacheData d = prompt_cache_read(path, s);
  const size_t limit = std::min(d.tokens.size(), tokens.empty() ? 0 : tokens.size() - 1);
  size_t n = 0;
  while (n < limit && d.tokens[n] == tokens[n]) ++n;
  if (n == 0) return 0;
  s.cache_import(0, static_cast<int64_t>(n), d.rows.data(), static_cast<int64_t>(d.tokens.size()));
  return static_cast<int64_t>(n);
}

void prompt_cache_save(const std::string& path, const Deepseek2Session& s, const std::vector<int32_t>& tokens,
                       const std::string& conversation) {
  refuse_output_over_input(path, s.model().file().path());
  require_writable_output(path);
  const PromptCacheShape shape = shape_of(s);
  PromptCacheData d;
  d.tokens = tokens;
  d.rows.resize(static_cast<size_t>(shape.n_layers) * tokens.size() * shape.row_floats);
  s.cache_export(0, static_cast<int64_t>(tokens.size()), d.rows.data());
  d.conversation = conversation;
  write_file_atomic(path, encode_prompt_cache(shape, d));
}

}  // namespace moe
