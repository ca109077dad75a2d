#include "tokenizer/sentencepiece.h"

#include <sentencepiece_processor.h>

#include <cstring>

#include "core/error.h"
#include "tokenizer/vocab.h"

namespace moe {

namespace {

// Just enough of the protobuf wire format to write a ModelProto; Debian ships
// no sentencepiece_model.pb.h. Field numbers are those of
// sentencepiece_model.proto.
class ProtoWriter {
 public:
  void varint_field(int field, uint64_t v) {
    key(field, 0);
    varint(v);
  }
  void int32_field(int field, int32_t v) {  // negative int32 is sign-extended to 64 bits
    varint_field(field, static_cast<uint64_t>(static_cast<int64_t>(v)));
  }
  void bytes_field(int field, std::string_view s) {
    key(field, 2);
    varint(s.size());
    out_.append(s);
  }
  void float_field(int field, float f) {
    key(field, 5);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    for (int i = 0; i < 4; ++i) out_ += static_cast<char>((bits >> (8 * i)) & 0xFF);
  }
  const std::string& bytes() const { return out_; }

 private:
  void key(int field, int wire_type) { varint((static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire_type)); }
  void varint(uint64_t v) {
    while (v >= 0x80) {
      out_ += static_cast<char>((v & 0x7F) | 0x80);
      v >>= 7;
    }
    out_ += static_cast<char>(v);
  }
  std::string out_;
};

// ModelProto fields.
constexpr int kPieces = 1, kTrainerSpec = 2, kNormalizerSpec = 3;
// ModelProto.SentencePiece fields.
constexpr int kPiece = 1, kScore = 2, kType = 3;
// TrainerSpec fields.
constexpr int kModelType = 3, kVocabSize = 4, kByteFallback = 35, kUnkId = 40, kBosId = 41, kEosId = 42,
              kPadId = 43, kUnkPiece = 45, kBosPiece = 46, kEosPiece = 47, kPadPiece = 48;
constexpr int kModelTypeBpe = 2;
// NormalizerSpec fields.
constexpr int kName = 1, kAddDummyPrefix = 3, kRemoveExtraWhitespaces = 4, kEscapeWhitespaces = 5;

}  // namespace

std::string sentencepiece_model_proto(const Vocab& vocab) {
  ProtoWriter model;
  bool has_bytes = false;
  int32_t unk = vocab.unk;
  for (int32_t id = 0; id < vocab.n_tokens(); ++id) {
    const TokenType t = vocab.type(id);
    has_bytes |= t == TokenType::byte;
    if (t == TokenType::unknown && (unk < 0 || vocab.type(unk) != TokenType::unknown)) unk = id;
    ProtoWriter piece;
    piece.bytes_field(kPiece, vocab.tokens[static_cast<size_t>(id)]);
    piece.float_field(kScore, vocab.scores[static_cast<size_t>(id)]);
    // SentencePiece has no "undefined" type; such tokens are never produced.
    piece.varint_field(kType, static_cast<uint64_t>(t == TokenType::undefined ? TokenType::unused : t));
    model.bytes_field(kPieces, piece.bytes());
  }

  ProtoWriter trainer;
  trainer.varint_field(kModelType, kModelTypeBpe);
  trainer.int32_field(kVocabSize, vocab.n_tokens());
  trainer.varint_field(kByteFallback, has_bytes ? 1 : 0);
  const auto special = [&](int id_field, int piece_field, int32_t id) {
    trainer.int32_field(id_field, id);
    if (id >= 0) trainer.bytes_field(piece_field, vocab.tokens[static_cast<size_t>(id)]);
  };
  special(kUnkId, kUnkPiece, unk);
  special(kBosId, kBosPiece, vocab.bos);
  special(kEosId, kEosPiece, vocab.eos);
  special(kPadId, kPadPiece, vocab.pad);
  model.bytes_field(kTrainerSpec, trainer.bytes());

  ProtoWriter normalizer;
  normalizer.bytes_field(kName, "identity");
  normalizer.varint_field(kAddDummyPrefix, vocab.add_space_prefix ? 1 : 0);
  normalizer.varint_field(kRemoveExtraWhitespaces, 0);
  normalizer.varint_field(kEscapeWhitespaces, 1);
  model.bytes_field(kNormalizerSpec, normalizer.bytes());
  return model.bytes();
}

SentencePieceModel::SentencePieceModel(const Vocab& vocab)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  bool has_unknown = false;
  for (int32_t id = 0; id < vocab.n_tokens() && !has_unknown; ++id) has_unknown = vocab.type(id) == TokenType::unknown;
  MOE_ASSERT(has_unknown, "%s: SentencePiece vocabulary has no token of type unknown (tokenizer.ggml.token_type 2)",
             vocab.source.c_str());
  const sentencepiece::util::Status st = sp_->LoadFromSerializedProto(sentencepiece_model_proto(vocab));
  if (!st.ok())
    throw_error("%s: libsentencepiece rejects the vocabulary: %s", vocab.source.c_str(), st.ToString().c_str());
}

SentencePieceModel::~SentencePieceModel() = default;

void SentencePieceModel::encode(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<int> ids;
  const sentencepiece::util::Status st = sp_->Encode(text, &ids);
  if (!st.ok()) throw_error("SentencePiece encode failed: %s", st.ToString().c_str());
  out.insert(out.end(), ids.begin(), ids.end());
}

}  // namespace moe
