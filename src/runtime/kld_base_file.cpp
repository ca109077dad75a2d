#include "runtime/kld_base_file.h"

#include <cstring>

#include "core/error.h"
#include "runtime/perplexity.h"

namespace moe {

namespace {

constexpr char kMagic[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};
// The scored rows need n_ctx >= 3; the upper bounds only keep the sizes below
// from overflowing on a corrupt header.
constexpr int32_t kMaxCtx = 1 << 24, kMaxVocab = 1 << 24;

}  // namespace

KldBaseWriter::KldBaseWriter(const std::string& path, int32_t n_ctx, int32_t n_vocab, int32_t n_chunk,
                             const std::vector<int32_t>& tokens)
    : path_(path), tmp_(path + ".tmp"), n_chunk_(n_chunk),
      chunk_values_(static_cast<size_t>(kld_rows_per_chunk(n_ctx) * log_prob_row_u16(n_vocab))) {
  MOE_ASSERT(tokens.size() >= static_cast<size_t>(n_chunk) * n_ctx,
             "%s: %zu tokens given for %d chunks of %d", path.c_str(), tokens.size(), n_chunk, n_ctx);
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) throw_error("%s: cannot open for writing", tmp_.c_str());
  write(kMagic, sizeof(kMagic));
  write(&n_ctx, sizeof(n_ctx));
  write(&n_vocab, sizeof(n_vocab));
  write(&n_chunk, sizeof(n_chunk));
  write(tokens.data(), static_cast<size_t>(n_chunk) * n_ctx * sizeof(int32_t));
}

KldBaseWriter::~KldBaseWriter() {
  if (f_) {
    std::fclose(f_);
    std::remove(tmp_.c_str());
  }
}

void KldBaseWriter::write(const void* data, size_t size) {
  if (size > 0 && std::fwrite(data, 1, size, f_) != size) throw_error("%s: write failed (disk full?)", tmp_.c_str());
}

void KldBaseWriter::write_chunk(const std::vector<uint16_t>& rows) {
  MOE_ASSERT(rows.size() == chunk_values_, "%s: chunk of %zu values, expected %zu", path_.c_str(), rows.size(),
             chunk_values_);
  MOE_ASSERT(chunks_written_ < n_chunk_, "%s: more than the %d chunks announced", path_.c_str(), n_chunk_);
  write(rows.data(), rows.size() * sizeof(uint16_t));
  ++chunks_written_;
}

void KldBaseWriter::finish() {
  MOE_ASSERT(chunks_written_ == n_chunk_, "%s: %d of %d chunks written", path_.c_str(), chunks_written_, n_chunk_);
  std::FILE* f = f_;
  f_ = nullptr;
  if (std::fclose(f) != 0 || std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    std::remove(tmp_.c_str());
    throw_error("%s: cannot write", path_.c_str());
  }
}

KldBaseReader::KldBaseReader(const std::string& path) : path_(path) {
  f_ = std::fopen(path.c_str(), "rb");
  if (!f_) throw_error("%s: cannot open the base log-probabilities file", path.c_str());
  char magic[8];
  int32_t head[3];
  if (std::fread(magic, 1, 8, f_) != 8 || std::memcmp(magic, kMagic, 8) != 0)
    throw_error("%s does not look like a file containing log-probabilities (no \"_logits_\" magic)", path.c_str());
  if (std::fread(head, sizeof(int32_t), 3, f_) != 3)
    throw_error("%s: failed reading n_ctx, n_vocab, n_chunk (file too short)", path.c_str());
  n_ctx_ = head[0];
  n_vocab_ = head[1];
  n_chunk_ = head[2];
  if (n_ctx_ < 3 || n_ctx_ > kMaxCtx || n_vocab_ < 1 || n_vocab_ > kMaxVocab || n_chunk_ < 1 ||
      static_cast<int64_t>(n_chunk_) * n_ctx_ > (int64_t{1} << 31))
    throw_error("%s: implausible header n_ctx=%d n_vocab=%d n_chunk=%d", path.c_str(), n_ctx_, n_vocab_, n_chunk_);

  // Check the size first: a truncated file fails here with both sizes named,
  // not in the middle of the run.
  const int64_t expected = 20 + static_cast<int64_t>(n_chunk_) * n_ctx_ * 4 +
                           static_cast<int64_t>(n_chunk_) * kld_rows_per_chunk(n_ctx_) * log_prob_row_u16(n_vocab_) * 2;
  const long here = std::ftell(f_);
  std::fseek(f_, 0, SEEK_END);
  const int64_t size = std::ftell(f_);
  std::fseek(f_, here, SEEK_SET);
  if (size != expected)
    throw_error("%s: %lld bytes, expected %lld for n_ctx=%d n_vocab=%d n_chunk=%d", path.c_str(),
                static_cast<long long>(size), static_cast<long long>(expected), n_ctx_, n_vocab_, n_chunk_);

  tokens_.resize(static_cast<size_t>(n_chunk_) * n_ctx_);
  if (std::fread(tokens_.data(), sizeof(int32_t), tokens_.size(), f_) != tokens_.size())
    throw_error("%s: failed reading the evaluation tokens", path.c_str());
  for (size_t i = 0; i < tokens_.size(); ++i)
    if (tokens_[i] < 0 || tokens_[i] >= n_vocab_)
      throw_error("%s: token %zu is %d, outside the vocabulary of %d", path.c_str(), i, tokens_[i], n_vocab_);
}

KldBaseReader::~KldBaseReader() {
  if (f_) std::fclose(f_);
}

void KldBaseReader::read_chunk(std::vector<uint16_t>& rows) {
  MOE_ASSERT(chunks_read_ < n_chunk_, "%s: has only %d chunks", path_.c_str(), n_chunk_);
  rows.resize(static_cast<size_t>(kld_rows_per_chunk(n_ctx_) * log_prob_row_u16(n_vocab_)));
  if (std::fread(rows.data(), sizeof(uint16_t), rows.size(), f_) != rows.size())
    throw_error("%s: failed reading log-probs for chunk %d", path_.c_str(), chunks_read_);
  ++chunks_read_;
}

}  // namespace moe
