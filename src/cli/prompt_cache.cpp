#include "cli/prompt_cache.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/output_guard.h"

namespace moe {

PromptCacheData prompt_cache_read(const std::string& path, const InferenceSession& s) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw_error("prompt cache '%s' is a directory", path.c_str());
  std::ifstream f(path, std::ios::binary);
  if (!f) throw_error("cannot open prompt cache '%s'", path.c_str());
  std::stringstream ss;
  ss << f.rdbuf();
  if (!f) throw_error("cannot read prompt cache '%s'", path.c_str());
  return decode_prompt_cache(ss.str(), s.saved_cache_shape(), "'" + path + "'");
}

int64_t prompt_cache_load(const std::string& path, InferenceSession& s, const std::vector<int32_t>& tokens) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return 0;
  const PromptCacheData d = prompt_cache_read(path, s);
  const size_t limit = std::min(d.tokens.size(), tokens.empty() ? 0 : tokens.size() - 1);
  size_t n = 0;
  while (n < limit && d.tokens[n] == tokens[n]) ++n;
  if (n == 0) return 0;
  s.saved_cache_import(d, static_cast<int64_t>(n));
  return static_cast<int64_t>(n);
}

void prompt_cache_save(const std::string& path, const std::string& model_path, InferenceSession& s,
                       const std::vector<int32_t>& tokens, const std::string& conversation) {
  refuse_output_over_input(path, model_path);
  require_writable_output(path);
  const PromptCacheShape shape = s.saved_cache_shape();
  PromptCacheData d;
  d.tokens = tokens;
  s.saved_cache_export(static_cast<int64_t>(tokens.size()), d);
  d.conversation = conversation;
  write_file_atomic(path, encode_prompt_cache(shape, d));
}

}  // namespace moe
