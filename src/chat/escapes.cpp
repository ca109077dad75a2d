#include "chat/escapes.h"

#include <cctype>

namespace moe {

namespace {
int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::string process_escapes(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[i + 1];
    switch (c) {
      case 'n': out += '\n'; ++i; continue;
      case 'r': out += '\r'; ++i; continue;
      case 't': out += '\t'; ++i; continue;
      case '\'': out += '\''; ++i; continue;
      case '"': out += '"'; ++i; continue;
      case '\\': out += '\\'; ++i; continue;
      case 'x':
        if (i + 3 < s.size()) {
          const int hi = hex_digit(s[i + 2]), lo = hex_digit(s[i + 3]);
          if (hi >= 0 && lo >= 0) {
            out += static_cast<char>(hi * 16 + lo);
            i += 3;
            continue;
          }
        }
        break;
      default: break;
    }
    out += '\\';  // not an escape: keep the backslash, the next character follows as usual
  }
  return out;
}

}  // namespace moe
