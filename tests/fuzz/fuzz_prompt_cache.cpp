// Fuzz target: the saved prompt cache reader (src/runtime/prompt_cache_file.h)
// on arbitrary bytes, against a fixed small shape. It must give a clean
// moe::Error or data of exactly the promised size; anything else escaping
// (a crash, a sanitizer report, another exception) is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "core/error.h"
#include "prompt_cache_shape.h"

using namespace moe;

namespace {
[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_prompt_cache: %s\n", what);
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const PromptCacheShape s = fuzz_prompt_cache_shape();
  try {
    const PromptCacheData d = decode_prompt_cache(std::string_view(reinterpret_cast<const char*>(data), size), s, "input");
    if (d.tokens.size() > static_cast<size_t>(s.n_ctx)) fail("more tokens than the context");
    if (d.rows.size() != d.tokens.size() * s.n_layers * s.row_floats) fail("rows do not match the tokens");
    for (int32_t t : d.tokens)
      if (t < 0 || t >= s.n_vocab) fail("a token outside the vocabulary");
  } catch (const Error&) {
  }
  return 0;
}
