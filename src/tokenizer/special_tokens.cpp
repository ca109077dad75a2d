#include "tokenizer/special_tokens.h"

#include <algorithm>

#include "tokenizer/vocab.h"

namespace moe {

SpecialTokens::SpecialTokens(const Vocab& vocab) {
  for (int32_t id = 0; id < vocab.n_tokens(); ++id) {
    const TokenType t = vocab.type(id);
    const std::string& text = vocab.tokens[static_cast<size_t>(id)];
    if (text.empty()) continue;  // would match everywhere
    if (t == TokenType::control || t == TokenType::unknown || t == TokenType::user_defined)
      entries_.push_back({text, id, t == TokenType::user_defined});
  }
  // Longest first; equal lengths by id so the order does not depend on the
  // sort (llama.cpp leaves it unspecified, which matters only when two tokens
  // of one length overlap in the text).
  std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
    return a.text.size() != b.text.size() ? a.text.size() > b.text.size() : a.id < b.id;
  });
}

std::vector<TextFragment> SpecialTokens::partition(std::string_view text, bool parse_special) const {
  std::vector<TextFragment> frags;
  if (text.empty()) return frags;
  frags.push_back({text, -1});
  std::vector<TextFragment> next;
  for (const Entry& e : entries_) {
    if (!e.always && !parse_special) continue;
    // Most tokens occur nowhere; only rebuild the list when one does.
    bool found = false;
    for (const TextFragment& f : frags) {
      if (f.token < 0 && f.text.find(e.text) != std::string_view::npos) {
        found = true;
        break;
      }
    }
    if (!found) continue;
    next.clear();
    for (const TextFragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      for (size_t at; (at = rest.find(e.text)) != std::string_view::npos;) {
        if (at > 0) next.push_back({rest.substr(0, at), -1});
        next.push_back({{}, e.id});
        rest.remove_prefix(at + e.text.size());
      }
      if (!rest.empty()) next.push_back({rest, -1});
    }
    frags.swap(next);
  }
  return frags;
}

}  // namespace moe
