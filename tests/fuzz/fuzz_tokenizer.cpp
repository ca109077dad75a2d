// Fuzz target: the tokenizer of the tiny DeepSeek-V3 fixture on arbitrary
// bytes. encode() must never throw; decode() of its ids must give the text
// back (for valid UTF-8 text); StreamDecoder, fed the ids one by one, must
// emit only valid UTF-8 and, when decode() is valid UTF-8, exactly decode().
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf_reader.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

using namespace moe;

namespace {

const Tokenizer& tokenizer() {
  static const Tokenizer tok = Tokenizer::from_gguf(GgufFile::open(MOE_FUZZ_TOKENIZER_MODEL));
  return tok;
}

[[noreturn]] void fail(const char* what, std::string_view text) {
  std::fprintf(stderr, "fuzz_tokenizer: %s (input %zu bytes)\n", what, text.size());
  std::abort();
}

std::string stream_decode(const Tokenizer& tok, const std::vector<int32_t>& ids, std::string_view text) {
  StreamDecoder dec(tok);
  std::string out;
  for (int32_t id : ids) {
    std::string piece = dec.push(id);
    if (!utf8_is_valid(piece)) fail("StreamDecoder::push emitted invalid UTF-8", text);
    out += piece;
  }
  std::string tail = dec.flush();
  if (!utf8_is_valid(tail)) fail("StreamDecoder::flush emitted invalid UTF-8", text);
  return out + tail;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Tokenizer& tok = tokenizer();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool valid = utf8_is_valid(text);
  for (bool parse_special : {false, true}) {
    const std::vector<int32_t> ids = tok.encode(text, /*add_special=*/false, parse_special);
    for (int32_t id : ids) {
      if (id < 0 || id >= tok.n_vocab()) fail("encode returned an id out of range", text);
    }
    const std::string whole = tok.decode(ids);
    // Byte-level BPE loses nothing: the special-token text decodes back to
    // itself too, so the round trip holds with and without parse_special.
    if (valid && whole != text) fail("decode(encode(text)) != text", text);
    const std::string streamed = stream_decode(tok, ids, text);
    if (utf8_is_valid(whole) && streamed != whole) fail("streamed decode != decode", text);
  }
  // With BOS, and without special tokens in the output.
  const std::vector<int32_t> ids = tok.encode(text, /*add_special=*/true, /*parse_special=*/true);
  const std::string plain = tok.decode(ids, /*special=*/false);
  (void)plain;
  return 0;
}
