#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace moe {

namespace {

struct ByteLevelTables {
  std::array<uint32_t, 256> cp_of_byte{};
  std::array<std::string, 256> utf8_of_byte;
  std::array<int16_t, 324> byte_of_cp{};  // every code point used is below 0x100 + 68

  ByteLevelTables() {
    byte_of_cp.fill(-1);
    const auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); };
    int next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const uint32_t cp = printable(b) ? static_cast<uint32_t>(b) : static_cast<uint32_t>(next++);
      cp_of_byte[b] = cp;
      utf8_of_byte[b] = utf8_encode(cp);
      byte_of_cp[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelTables& tables() {
  static const ByteLevelTables t;  // immutable after construction
  return t;
}

}  // namespace

const std::string& byte_level_char(uint8_t b) { return tables().utf8_of_byte[b]; }

int byte_level_byte(uint32_t cp) {
  const auto& t = tables();
  return cp < t.byte_of_cp.size() ? t.byte_of_cp[cp] : -1;
}

std::string byte_level_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const Utf8Sequence q = utf8_sequence_at(text, i);
    if (q.kind != Utf8Sequence::valid) {  // not byte-level text at all: keep the byte
      out += text[i++];
      continue;
    }
    const int b = byte_level_byte(utf8_decode_valid(text, i, q.length));
    if (b >= 0) {
      out += static_cast<char>(b);
    } else {
      out.append(text.substr(i, q.length));
    }
    i += q.length;
  }
  return out;
}

std::string byte_level_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += byte_level_char(static_cast<uint8_t>(c));
  return out;
}

}  // namespace moe
