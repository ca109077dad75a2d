#include "tokenizer/tokenizer.h"

#include <cstdlib>
#include <optional>

#include "core/error.h"
#include "gguf/gguf_reader.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/sentencepiece.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/vocab.h"

namespace moe {

struct Tokenizer::Impl {
  Vocab vocab;
  SpecialTokens specials;
  std::optional<Pretokenizer> pre;            // byte-level BPE only
  std::unique_ptr<SentencePieceModel> spm;    // SentencePiece only

  explicit Impl(Vocab v) : vocab(std::move(v)), specials(vocab) {
    if (vocab.kind == VocabKind::bpe) {
      try {
        pre.emplace(vocab.pre);
      } catch (const Error& e) {
        throw_error("%s: %s", vocab.source.c_str(), e.what());
      }
    } else {
      spm = std::make_unique<SentencePieceModel>(vocab);
    }
  }
};

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::from_gguf(const GgufFile& f) {
  return Tokenizer(std::make_shared<const Impl>(Vocab::from_gguf(f)));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const Vocab& v = impl_->vocab;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && v.add_bos) out.push_back(v.bos);
  for (const TextFragment& frag : impl_->specials.partition(text, parse_special)) {
    if (frag.token >= 0) {
      out.push_back(frag.token);
    } else if (impl_->spm) {
      impl_->spm->encode(frag.text, out);
    } else {
      const Pretokenizer& pre = *impl_->pre;
      for (std::string_view piece : pre.split(frag.text)) {
        if (pre.ignore_merges()) {
          if (const int32_t id = v.find(byte_level_encode(piece)); id >= 0) {
            out.push_back(id);
            continue;
          }
        }
        bpe_encode_piece(piece, v.merges, v.unk, out);
      }
    }
  }
  if (add_special && v.add_eos) out.push_back(v.eos);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool special) const {
  const Vocab& v = impl_->vocab;
  MOE_ASSERT(id >= 0 && id < v.n_tokens(), "token id %d is out of range for a vocabulary of %d tokens", id,
             v.n_tokens());
  const std::string& text = v.tokens[static_cast<size_t>(id)];
  switch (v.type(id)) {
    case TokenType::control:
    case TokenType::unknown:
      return special ? text : std::string();
    case TokenType::user_defined:
      return text;
    case TokenType::normal: {
      if (v.kind == VocabKind::bpe) return byte_level_decode(text);
      std::string out;  // SentencePiece writes spaces as U+2581
      constexpr std::string_view kSpaceMark = "\xE2\x96\x81";
      for (size_t i = 0; i < text.size();) {
        if (text.compare(i, kSpaceMark.size(), kSpaceMark) == 0) {
          out += ' ';
          i += kSpaceMark.size();
        } else {
          out += text[i++];
        }
      }
      return out;
    }
    case TokenType::byte: {
      // "<0xE6>"
      if (text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>') {
        const unsigned long b = std::strtoul(text.substr(3, 2).c_str(), nullptr, 16);
        return std::string(1, static_cast<char>(b));
      }
      return text;
    }
    case TokenType::unused:
    case TokenType::undefined:
      return std::string();
  }
  return std::string();
}

bool Tokenizer::strips_leading_space() const {
  return impl_->vocab.kind == VocabKind::sentencepiece && impl_->vocab.add_space_prefix;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool special) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string piece = token_to_piece(ids[i], special);
    if (i == 0 && strips_leading_space() && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    out += piece;
  }
  return out;
}

int32_t Tokenizer::bos() const { return impl_->vocab.bos; }
int32_t Tokenizer::eos() const { return impl_->vocab.eos; }
bool Tokenizer::is_eog(int32_t id) const { return impl_->vocab.is_eog(id); }
int32_t Tokenizer::n_vocab() const { return impl_->vocab.n_tokens(); }
const Vocab& Tokenizer::vocab() const { return impl_->vocab; }

}  // namespace moe
