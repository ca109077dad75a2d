// UTF-8 helpers for the tokenizer.
//
// "Well-formed" follows the Unicode standard's table 3-7: no overlong forms,
// no surrogates (U+D800..DFFF), nothing past U+10FFFF. Text that breaks these
// rules is never rejected by the tokenizer; callers decide what to do with the
// bytes (the pre-tokenizer makes each one a piece of its own, the stream
// decoder prints U+FFFD), so they need to know exactly where sequences start,
// end, or are cut short.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moe {

struct Utf8Sequence {
  enum Kind { valid, truncated, invalid };
  Kind kind;
  // valid: bytes in the sequence (1..4). truncated: bytes present, all of them
  // a correct start of a sequence that s ends in the middle of. invalid: bytes
  // in the "maximal subpart" to replace by one U+FFFD (at least 1).
  size_t length;
};

// Classifies the sequence starting at s[i] (i < s.size()).
Utf8Sequence utf8_sequence_at(std::string_view s, size_t i);

// True when every byte of s belongs to a well-formed sequence.
bool utf8_is_valid(std::string_view s);

// The code point of the valid sequence at s[i]; the caller has checked it.
uint32_t utf8_decode_valid(std::string_view s, size_t i, size_t length);

// UTF-8 bytes of a code point (<= U+10FFFF, not a surrogate).
std::string utf8_encode(uint32_t cp);

inline constexpr std::string_view kUtf8Replacement = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace moe
