// GPT-2's byte-level alphabet, used by every `gpt2` (byte-level BPE) vocabulary.
//
// Each of the 256 byte values is written as one printable code point, so token
// texts never hold raw control bytes or spaces: the 188 bytes that are
// printable Latin-1 ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) stand for
// themselves, and the other 68, in increasing order, become U+0100, U+0101,
// ... (space 0x20 is U+0120 'Ġ', newline 0x0A is U+010A 'Ċ').
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace moe {

// UTF-8 of the code point that stands for byte b.
const std::string& byte_level_char(uint8_t b);

// The byte a code point stands for, or -1 when it is not in the alphabet.
int byte_level_byte(uint32_t cp);

// Byte-level text (a token's text) back to the bytes it stands for. Code
// points outside the alphabet (a hand-added token, say) are copied as UTF-8.
std::string byte_level_decode(std::string_view text);

// Bytes to byte-level text: each byte becomes its code point.
std::string byte_level_encode(std::string_view bytes);

}  // namespace moe
