#include "tokenizer/utf8.h"

#include "core/error.h"

namespace moe {

Utf8Sequence utf8_sequence_at(std::string_view s, size_t i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) return {Utf8Sequence::valid, 1};

  // Length of the sequence and the allowed range of its second byte; the
  // narrowed ranges after E0, ED, F0 and F4 are what exclude overlong forms,
  // surrogates and code points past U+10FFFF.
  size_t n = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 == 0xE0) {
    n = 3, lo = 0xA0;
  } else if (b0 == 0xED) {
    n = 3, hi = 0x9F;
  } else if (b0 >= 0xE1 && b0 <= 0xEF) {
    n = 3;
  } else if (b0 == 0xF0) {
    n = 4, lo = 0x90;
  } else if (b0 >= 0xF1 && b0 <= 0xF3) {
    n = 4;
  } else if (b0 == 0xF4) {
    n = 4, hi = 0x8F;
  } else {
    return {Utf8Sequence::invalid, 1};  // 80..C1, F5..FF never start a sequence
  }

  for (size_t k = 1; k < n; ++k) {
    if (i + k >= s.size()) return {Utf8Sequence::truncated, k};
    const auto b = static_cast<uint8_t>(s[i + k]);
    const uint8_t min = k == 1 ? lo : 0x80;
    const uint8_t max = k == 1 ? hi : 0xBF;
    if (b < min || b > max) return {Utf8Sequence::invalid, k};
  }
  return {Utf8Sequence::valid, n};
}

bool utf8_is_valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const Utf8Sequence q = utf8_sequence_at(s, i);
    if (q.kind != Utf8Sequence::valid) return false;
    i += q.length;
  }
  return true;
}

uint32_t utf8_decode_valid(std::string_view s, size_t i, size_t length) {
  const auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(s[i + k])); };
  switch (length) {
    case 1: return b(0);
    case 2: return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3: return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default: return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

std::string utf8_encode(uint32_t cp) {
  MOE_ASSERT(cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF), "utf8_encode: U+%X is not a Unicode scalar value", cp);
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

}  // namespace moe
