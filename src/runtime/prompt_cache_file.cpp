#include "runtime/prompt_cache_file.h"

#include <cstring>

#include "core/error.h"
#include "runtime/backend.h"

namespace moe {

namespace {

constexpr char kMagic[8] = {'M', 'O', 'E', 'P', 'C', 'A', 'C', 'H'};
constexpr uint32_t kVersion = 3;
constexpr uint64_t kMaxStateBytes = 64ull << 30;
constexpr uint32_t kMaxConversationBytes = 64u << 20;

uint64_t fnv1a(std::string_view b) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : b) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// Reads fields in order; every read is checked against the bytes left.
class Reader {
 public:
  Reader(std::string_view b, const std::string& what) : b_(b), what_(what) {}
  template <typename T>
  T get(const char* field) {
    T v;
    need(sizeof v, field);
    std::memcpy(&v, b_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::string_view bytes(uint64_t n, const char* field) {
    need(n, field);
    const std::string_view s = b_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  size_t pos() const { return pos_; }
  size_t left() const { return b_.size() - pos_; }

 private:
  void need(uint64_t n, const char* field) const {
    if (n > b_.size() - pos_)
      throw_error("prompt cache %s: cut short at the %s (%zu bytes; %llu more needed at offset %zu)", what_.c_str(),
                  field, b_.size(), static_cast<unsigned long long>(n), pos_);
  }
  std::string_view b_;
  const std::string& what_;
  size_t pos_ = 0;
};

// LatentType's name for a stored value (runtime/backend.h).
std::string type_name(uint32_t t) {
  if (t >= kDeepseek4StateType && t <= kDeepseek4StateType + static_cast<uint32_t>(LatentType::kQ8_0))
    return std::string("deepseek4 ") + latent_type_name(static_cast<LatentType>(t - kDeepseek4StateType));
  return t <= static_cast<uint32_t>(LatentType::kQ8_0) ? latent_type_name(static_cast<LatentType>(t))
                                                        : "type-" + std::to_string(t);
}

}  // namespace

std::string encode_prompt_cache(const PromptCacheShape& shape, const PromptCacheData& data) {
  MOE_ASSERT(data.rows.size() == static_cast<size_t>(shape.n_layers) * data.tokens.size() * shape.row_floats,
             "prompt cache: %zu floats for %zu tokens", data.rows.size(), data.tokens.size());
  std::string out(kMagic, sizeof kMagic);
  put(out, kVersion);
  put(out, shape.model_id);
  put(out, static_cast<uint32_t>(shape.model_name.size()));
  out += shape.model_name;
  put(out, shape.latent_type);
  put(out, shape.n_layers);
  put(out, shape.row_floats);
  MOE_ASSERT(data.conversation.size() <= kMaxConversationBytes, "prompt cache: a conversation of %zu bytes",
             data.conversation.size());
  put(out, static_cast<uint32_t>(data.conversation.size()));
  out += data.conversation;
  put(out, static_cast<uint64_t>(data.tokens.size()));
  if (!data.tokens.empty()) out.append(reinterpret_cast<const char*>(data.tokens.data()), data.tokens.size() * sizeof(int32_t));
  if (!data.rows.empty()) out.append(reinterpret_cast<const char*>(data.rows.data()), data.rows.size() * sizeof(float));
  put(out, static_cast<uint64_t>(data.state.size()));
  out += data.state;
  put(out, fnv1a(out));
  return out;
}

PromptCacheData decode_prompt_cache(std::string_view bytes, const PromptCacheShape& expect, const std::string& what) {
  Reader r(bytes, what);
  if (r.bytes(sizeof kMagic, "magic") != std::string_view(kMagic, sizeof kMagic))
    throw_error("prompt cache %s: not a moe.cpp prompt cache (no MOEPCACH magic)", what.c_str());
  const auto version = r.get<uint32_t>("version");
  if (version != kVersion)
    throw_error("prompt cache %s: version %u; this build reads version %u (remove the file and save it again)",
                what.c_str(), version, kVersion);
  const auto model_id = r.get<uint64_t>("model id");
  const auto name_len = r.get<uint32_t>("model name length");
  if (name_len > 4096) throw_error("prompt cache %s: a model name of %u bytes", what.c_str(), name_len);
  const std::string name(r.bytes(name_len, "model name"));
  if (model_id != expect.model_id)
    throw_error("prompt cache %s was saved for model '%s', not for %s (the weights differ)", what.c_str(), name.c_str(),
                expect.model_name.c_str());
  const auto type = r.get<uint32_t>("cache type");
  const auto layers = r.get<uint32_t>("layer count");
  const auto row = r.get<uint32_t>("row size");
  if (type != expect.latent_type || layers != expect.n_layers || row != expect.row_floats)
    throw_error("prompt cache %s: its cache is %s, %u layers of %u floats per row; this run's is %s, %u layers of "
                "%u (save it again with this -ctk)", what.c_str(), type_name(type).c_str(), layers, row,
                type_name(expect.latent_type).c_str(), expect.n_layers, expect.row_floats);
  PromptCacheData d;
  const auto conversation_len = r.get<uint32_t>("conversation length");
  if (conversation_len > kMaxConversationBytes)
    throw_error("prompt cache %s: a conversation of %u bytes", what.c_str(), conversation_len);
  d.conversation = std::string(r.bytes(conversation_len, "conversation"));
  const auto n = r.get<uint64_t>("token count");
  if (n > static_cast<uint64_t>(expect.n_ctx))
    throw_error("prompt cache %s: %llu tokens, more than the context of %lld", what.c_str(),
                static_cast<unsigned long long>(n), static_cast<long long>(expect.n_ctx));
  // Sizes against the bytes there are, before allocating for them.
  const uint64_t row_bytes = static_cast<uint64_t>(layers) * row * sizeof(float) + sizeof(int32_t);
  if (n * row_bytes + 2 * sizeof(uint64_t) > r.left())
    throw_error("prompt cache %s: %llu tokens need %llu more bytes, the file has %zu", what.c_str(),
                static_cast<unsigned long long>(n), static_cast<unsigned long long>(n * row_bytes + 16), r.left());
  d.tokens.resize(n);
  d.rows.resize(n * layers * row);
  const std::string_view tokens = r.bytes(n * sizeof(int32_t), "tokens");
  const std::string_view rows = r.bytes(d.rows.size() * sizeof(float), "rows");
  // An empty vector's data() may be null, which memcpy may not take (a state
  // file has tokens and no rows).
  if (!tokens.empty()) std::memcpy(d.tokens.data(), tokens.data(), tokens.size());
  if (!rows.empty()) std::memcpy(d.rows.data(), rows.data(), rows.size());
  const auto state_len = r.get<uint64_t>("state length");
  if (state_len > kMaxStateBytes || state_len + sizeof(uint64_t) != r.left())
    throw_error("prompt cache %s: a state of %llu bytes where %zu remain", what.c_str(),
                static_cast<unsigned long long>(state_len), r.left());
  if (state_len != 0 && expect.row_floats != 0)
    throw_error("prompt cache %s: a state of %llu bytes in a file of cache rows", what.c_str(),
                static_cast<unsigned long long>(state_len));
  d.state = std::string(r.bytes(state_len, "state"));
  const size_t body = r.pos();
  if (r.get<uint64_t>("checksum") != fnv1a(bytes.substr(0, body)))
    throw_error("prompt cache %s: the checksum does not match (a torn or edited file)", what.c_str());
  for (size_t i = 0; i < d.tokens.size(); ++i)
    if (d.tokens[i] < 0 || d.tokens[i] >= expect.n_vocab)
      throw_error("prompt cache %s: token %d at %zu is outside the vocabulary (%lld)", what.c_str(), d.tokens[i], i,
                  static_cast<long long>(expect.n_vocab));
  return d;
}

}  // namespace moe
