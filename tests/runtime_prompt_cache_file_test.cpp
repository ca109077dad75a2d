// The saved prompt cache (runtime/prompt_cache_file.h) is read like hostile
// input: a file that is cut, edited, of another model or shape, or claims
// more than it holds gives a clear error, never a crash or a huge
// allocation; a good file reads back exactly.
#include <doctest/doctest.h>

#include <string>

#include "core/error.h"
#include "fuzz/prompt_cache_shape.h"
#include "runtime/prompt_cache_file.h"

using namespace moe;

namespace {

PromptCacheShape shape() {
  PromptCacheShape s = fuzz_prompt_cache_shape();  // 2 layers, 6 floats per row
  s.model_name = "tiny";
  s.n_ctx = 16;
  s.n_vocab = 100;
  return s;
}

PromptCacheData data(size_t n) {
  PromptCacheData d;
  for (size_t i = 0; i < n; ++i) d.tokens.push_back(static_cast<int32_t>(7 * i % 100));
  for (size_t i = 0; i < 2 * n * 6; ++i) d.rows.push_back(0.25f * static_cast<float>(i));
  return d;
}

std::string error_of(std::string_view bytes, const PromptCacheShape& s) {
  try {
    decode_prompt_cache(bytes, s, "f");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("prompt cache file: round trip, with and without a conversation") {
  for (const std::string conversation : {"", R"({"messages":[{"role":"user","content":"Hi"}]})"}) {
    PromptCacheData want = data(9);
    want.conversation = conversation;
    const PromptCacheData d = decode_prompt_cache(encode_prompt_cache(shape(), want), shape(), "f");
    CHECK(d.tokens == want.tokens);
    CHECK(d.rows == want.rows);
    CHECK(d.conversation == conversation);
  }
}

TEST_CASE("prompt cache file: every cut, every flipped byte and every foreign shape is a clear error") {
  PromptCacheData saved = data(9);
  saved.conversation = R"({"messages":[]})";
  const std::string b = encode_prompt_cache(shape(), saved);
  for (size_t n = 0; n < b.size(); ++n) CHECK_MESSAGE(!error_of(b.substr(0, n), shape()).empty(), n);
  CHECK(!error_of(b + "x", shape()).empty());
  for (size_t i = 0; i < b.size(); ++i) {
    std::string c = b;
    c[i] = static_cast<char>(c[i] ^ 0x40);
    CHECK_MESSAGE(!error_of(c, shape()).empty(), i);
  }
  PromptCacheShape other = shape();
  other.model_id = 99;
  other.model_name = "big";
  CHECK(error_of(b, other).find("saved for model 'tiny', not for big") != std::string::npos);
  other = shape();
  other.latent_type = 1;
  CHECK(error_of(b, other).find("-ctk") != std::string::npos);
  other = shape();
  other.n_ctx = 8;
  CHECK(error_of(b, other).find("more than the context of 8") != std::string::npos);
  other = shape();
  other.n_vocab = 50;  // tokens up to 98 were saved
  CHECK(error_of(b, other).find("outside the vocabulary") != std::string::npos);
  CHECK(error_of("GGUF and more bytes", shape()).find("not a moe.cpp prompt cache") != std::string::npos);
}

TEST_CASE("prompt cache file: a token count the bytes do not hold is refused before allocating") {
  std::string b = encode_prompt_cache(shape(), data(1));
  // The token count sits after magic, version, id, name length, name, type,
  // layers, row, conversation length (and no conversation).
  const size_t at = 8 + 4 + 8 + 4 + 4 + 4 + 4 + 4 + 4;
  PromptCacheShape big = shape();
  big.n_ctx = int64_t{1} << 40;
  const uint64_t huge = uint64_t{1} << 39;
  b.replace(at, 8, reinterpret_cast<const char*>(&huge), 8);
  CHECK(error_of(b, big).find("need") != std::string::npos);
}
