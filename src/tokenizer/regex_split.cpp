#include "tokenizer/regex_split.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace moe {

namespace {

// llama.cpp's whitespace set (unicode_set_whitespace: Unicode White_Space) as
// the inside of a character class.
constexpr std::string_view kWhitespaceItems =
    "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

// The non-ASCII part of that set, as sorted single code points and ranges.
constexpr std::pair<uint32_t, uint32_t> kNonAsciiWhitespace[] = {
    {0x85, 0x85},     {0xA0, 0xA0},     {0x1680, 0x1680}, {0x2000, 0x200A}, {0x2028, 0x2029},
    {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
};

// Appends "\x{lo}" or "\x{lo}-\x{hi}".
void append_range(std::string& out, uint32_t lo, uint32_t hi) {
  out += strfmt("\\x{%X}", lo);
  if (hi > lo) out += strfmt("-\\x{%X}", hi);
}

// Characters assigned in Unicode 15.0 and 15.1, by general category group.
// llama.cpp's tables (unicode-data.cpp) are Unicode 15.1; Debian 12's PCRE2
// knows Unicode 14 and calls these unassigned. Every \p{L}, \p{M}, \p{N},
// \p{P} and \p{S} gets them added, so that new emoji (U+1FAE8 and friends) and
// CJK Extension H/I split as in llama.cpp. Made from ICU 72 (Unicode 15.0)
// u_charType() over all code points, minus what PCRE2 10.42 already matches,
// plus 15.1's U+2EBF0..2EE5D (Lo), U+2FFC..2FFF and U+31EF (So); the result
// equals llama.cpp's table on all of Unicode. (Control and format characters
// need nothing: unassigned and "other" behave alike in these regexes.)
struct CategoryAdditions {
  char group;
  std::string_view items;  // inside of a character class
};
constexpr CategoryAdditions kUnicode15Additions[] = {
    {'L',
     "\\x{1123F}-\\x{11240}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}\\x{1342F}"
     "\\x{13441}-\\x{13446}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}"
     "\\x{1E4D0}-\\x{1E4EB}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}"},
    {'M',
     "\\x{CF3}\\x{ECE}\\x{10EFD}-\\x{10EFF}\\x{11241}\\x{11F00}-\\x{11F01}\\x{11F03}"
     "\\x{11F34}-\\x{11F3A}\\x{11F3E}-\\x{11F42}\\x{13440}\\x{13447}-\\x{13455}\\x{1E08F}"
     "\\x{1E4EC}-\\x{1E4EF}"},
    {'N', "\\x{11F50}-\\x{11F59}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}"},
    {'P', "\\x{11B00}-\\x{11B09}\\x{11F43}-\\x{11F4F}"},
    {'S',
     "\\x{2FFC}-\\x{2FFF}\\x{31EF}\\x{1F6DC}\\x{1F774}-\\x{1F776}\\x{1F77B}-\\x{1F77F}\\x{1F7D9}"
     "\\x{1FA75}-\\x{1FA77}\\x{1FA87}-\\x{1FA88}\\x{1FAAD}-\\x{1FAAF}\\x{1FABB}-\\x{1FABD}"
     "\\x{1FABF}\\x{1FACE}-\\x{1FACF}\\x{1FADA}-\\x{1FADB}\\x{1FAE8}\\x{1FAF7}-\\x{1FAF8}"},
};

// If pattern[i] starts "\p{X}" with X one of L M N P S, the class items that
// stand for it (the property and its Unicode 15 additions) and the length of
// the escape; otherwise length 0.
std::pair<std::string, size_t> property_items(std::string_view pattern, size_t i) {
  if (i + 5 > pattern.size() || pattern.compare(i, 3, "\\p{") != 0 || pattern[i + 4] != '}') return {{}, 0};
  for (const CategoryAdditions& a : kUnicode15Additions)
    if (pattern[i + 3] == a.group) return {std::string(pattern.substr(i, 5)) + std::string(a.items), 5};
  return {{}, 0};
}

int hex_digit(char h) {
  if (h >= '0' && h <= '9') return h - '0';
  if (h >= 'A' && h <= 'F') return h - 'A' + 10;
  if (h >= 'a' && h <= 'f') return h - 'a' + 10;
  return -1;
}

// Parses a class body made only of literal characters, simple escapes and
// ranges into code point ranges. False when it holds anything else (\p{..},
// \s, ...), in which case the caller leaves the class alone.
bool parse_literal_class(std::string_view body, std::vector<std::pair<uint32_t, uint32_t>>& ranges) {
  size_t i = 0;
  const auto atom = [&](uint32_t& cp) -> bool {
    if (i >= body.size()) return false;
    if (body[i] == '\\') {
      if (i + 1 >= body.size()) return false;
      const char c = body[i + 1];
      i += 2;
      if (c == 'x' && i < body.size() && body[i] == '{') {  // \x{HEX}
        const size_t close = body.find('}', i);
        if (close == std::string_view::npos || close == i + 1 || close - i > 7) return false;
        cp = 0;
        for (size_t k = i + 1; k < close; ++k) {
          const int d = hex_digit(body[k]);
          if (d < 0) return false;
          cp = cp * 16 + static_cast<uint32_t>(d);
        }
        i = close + 1;
        return true;
      }
      switch (c) {
        case 'r': cp = '\r'; return true;
        case 'n': cp = '\n'; return true;
        case 't': cp = '\t'; return true;
        default:
          if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return false;
          cp = static_cast<uint8_t>(c);  // an escaped punctuation character stands for itself
          return true;
      }
    }
    const Utf8Sequence q = utf8_sequence_at(body, i);
    if (q.kind != Utf8Sequence::valid) return false;
    cp = utf8_decode_valid(body, i, q.length);
    i += q.length;
    return true;
  };
  while (i < body.size()) {
    uint32_t lo = 0, hi = 0;
    if (!atom(lo)) return false;
    hi = lo;
    if (i + 1 < body.size() && body[i] == '-') {
      ++i;
      if (!atom(hi) || hi < lo) return false;
    }
    ranges.emplace_back(lo, hi);
  }
  return true;
}

// A non-negated literal class minus the non-ASCII whitespace characters.
std::string class_without_nonascii_whitespace(std::string_view body) {
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
  if (!parse_literal_class(body, ranges)) return std::string(body);
  std::string out;
  bool changed = false;
  for (auto [lo, hi] : ranges) {
    // Cut [lo, hi] around each whitespace range it overlaps.
    uint32_t start = lo;
    for (auto [wlo, whi] : kNonAsciiWhitespace) {
      if (whi < start || wlo > hi) continue;
      changed = true;
      if (wlo > start) append_range(out, start, wlo - 1);
      start = whi + 1;
      if (start > hi) break;
    }
    if (start <= hi) append_range(out, start, hi);
  }
  return changed ? out : std::string(body);
}

void append_class(std::string& out, std::string_view body, bool negated, std::string_view pattern) {
  std::string rewritten;
  bool has_space_class = false, has_property = false;
  for (size_t i = 0; i < body.size(); ++i) {
    if (const auto [items, len] = property_items(body, i); len > 0) {
      rewritten += items;
      has_property = true;
      i += len - 1;
      continue;
    }
    if (body[i] == '\\' && i + 1 < body.size()) {
      const char c = body[++i];
      if (c == 's') {
        rewritten += kWhitespaceItems;
        has_space_class = true;
        continue;
      }
      MOE_ASSERT(c != 'S', "pre-tokenizer regex '%.*s': \\S inside a character class is not supported",
                 static_cast<int>(pattern.size()), pattern.data());
      if (c == 'p' || c == 'P') has_property = true;
      rewritten += '\\';
      rewritten += c;
      continue;
    }
    rewritten += body[i];
  }
  if (!negated && !has_space_class && !has_property) rewritten = class_without_nonascii_whitespace(body);
  out += negated ? "[^" : "[";
  out += rewritten;
  out += ']';
}

}  // namespace

std::string regex_llama_semantics(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() * 2);
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (const auto [items, len] = property_items(pattern, i); len > 0) {
      out += '[' + items + ']';
      i += len - 1;
      continue;
    }
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      if (e == 's') {
        out += '[';
        out += kWhitespaceItems;
        out += ']';
      } else if (e == 'S') {
        out += "[^";
        out += kWhitespaceItems;
        out += ']';
      } else {
        out += '\\';
        out += e;
      }
      continue;
    }
    if (c != '[') {
      out += c;
      continue;
    }
    // A character class: find its end, skipping escapes; a ']' right after
    // '[' or '[^' is a literal, as in PCRE2.
    size_t j = i + 1;
    const bool negated = j < pattern.size() && pattern[j] == '^';
    if (negated) ++j;
    const size_t body_start = j;
    if (j < pattern.size() && pattern[j] == ']') ++j;
    while (j < pattern.size() && pattern[j] != ']') j += pattern[j] == '\\' ? 2 : 1;
    MOE_ASSERT(j < pattern.size(), "pre-tokenizer regex '%.*s': unterminated character class at offset %zu",
               static_cast<int>(pattern.size()), pattern.data(), i);
    append_class(out, pattern.substr(body_start, j - body_start), negated, pattern);
    i = j;
  }
  return out;
}

SplitRegex::SplitRegex(std::string_view pattern) : pattern_(pattern) {
  const std::string compiled = regex_llama_semantics(pattern);
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  // DOLLAR_ENDONLY: `$` means the end of the piece, as in ECMAScript (llama.cpp
  // uses std::regex), not "before a final newline" as in Perl.
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(compiled.data()), compiled.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &err_offset, nullptr);
  if (!code_) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw_error("pre-tokenizer regex '%s' does not compile (as '%s'): %s at offset %zu", pattern_.c_str(),
                compiled.c_str(), reinterpret_cast<const char*>(msg), static_cast<size_t>(err_offset));
  }
  // JIT is an optimisation only: when the library lacks it, pcre2_match
  // interprets the pattern instead.
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
  // No limit on backtracking: these patterns backtrack at most about twice the
  // length of a whitespace run, and PCRE2's default limit (10 million) would
  // turn a long run of spaces into an error instead of tokens.
  context_ = pcre2_match_context_create(nullptr);
  MOE_ASSERT(context_ != nullptr, "pre-tokenizer: out of memory for a PCRE2 match context");
  pcre2_set_match_limit(context_, UINT32_MAX);
  pcre2_set_depth_limit(context_, UINT32_MAX);
}

SplitRegex::~SplitRegex() {
  pcre2_match_context_free(context_);
  pcre2_code_free(code_);
}

SplitRegex::SplitRegex(SplitRegex&& o) noexcept
    : pattern_(std::move(o.pattern_)),
      code_(std::exchange(o.code_, nullptr)),
      context_(std::exchange(o.context_, nullptr)) {}

SplitRegex& SplitRegex::operator=(SplitRegex&& o) noexcept {
  if (this != &o) {
    pcre2_match_context_free(context_);
    pcre2_code_free(code_);
    pattern_ = std::move(o.pattern_);
    code_ = std::exchange(o.code_, nullptr);
    context_ = std::exchange(o.context_, nullptr);
  }
  return *this;
}

void SplitRegex::split(const std::vector<std::string_view>& in, std::vector<std::string_view>& out) const {
  // One ovector pair is all we read; groups in the pattern are not reported.
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(pcre2_match_data_create(1, nullptr),
                                                                          &pcre2_match_data_free);
  MOE_ASSERT(md != nullptr, "pre-tokenizer: out of memory for PCRE2 match data");
  for (std::string_view piece : in) {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
    size_t gap_start = 0;  // start of the text not yet emitted
    size_t pos = 0;        // where the next search starts
    while (pos <= piece.size()) {
      const int rc = pcre2_match(code_, subject, piece.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), context_);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        throw_error("pre-tokenizer regex '%s' failed on a %zu-byte piece: %s", pattern_.c_str(), piece.size(),
                    reinterpret_cast<const char*>(msg));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      const size_t start = ov[0], end = ov[1];
      if (start > gap_start) out.push_back(piece.substr(gap_start, start - gap_start));
      if (end > start) {
        out.push_back(piece.substr(start, end - start));
        gap_start = pos = end;
        continue;
      }
      // An empty match still ends the gap before it (std::regex_iterator
      // reports it too); step over one character so the search moves on.
      gap_start = start;
      if (start >= piece.size()) break;
      pos = start + utf8_sequence_at(piece, start).length;
    }
    if (gap_start < piece.size()) out.push_back(piece.substr(gap_start));
  }
}

}  // namespace moe
