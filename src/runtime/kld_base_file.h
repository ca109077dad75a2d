// The file of base-model log-probabilities that `moe-perplexity
// --kl-divergence-base FILE` writes and `--kl-divergence` reads. The layout
// is llama.cpp's (llama-perplexity --kl-divergence-base), so either tool
// reads the other's files. All values little-endian:
//
//   char[8]  "_logits_"
//   int32    n_ctx
//   int32    n_vocab
//   int32    n_chunk
//   int32    tokens[n_chunk * n_ctx]        the text's tokens (no BOS swap)
//   per chunk, per scored position j = n_ctx/2 .. n_ctx-2 (n_ctx-1-n_ctx/2 rows):
//     float32 scale, float32 min_log_prob, uint16 code[n_vocab rounded up to even]
//     log p(i) = scale * code[i] + min_log_prob
//
// (runtime/perplexity.h encodes and decodes the rows.)
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace moe {

// Rows per chunk: the scored positions of an n_ctx chunk.
inline int64_t kld_rows_per_chunk(int64_t n_ctx) { return n_ctx - 1 - n_ctx / 2; }

// Writes to PATH.tmp and renames it to PATH in finish(), so an interrupted
// run never leaves a partial file under the name; the destructor removes the
// temporary file when finish() was not reached.
class KldBaseWriter {
 public:
  KldBaseWriter(const std::string& path, int32_t n_ctx, int32_t n_vocab, int32_t n_chunk,
                const std::vector<int32_t>& tokens);
  ~KldBaseWriter();
  KldBaseWriter(const KldBaseWriter&) = delete;
  KldBaseWriter& operator=(const KldBaseWriter&) = delete;

  // One chunk's rows, kld_rows_per_chunk(n_ctx) * log_prob_row_u16(n_vocab) values.
  void write_chunk(const std::vector<uint16_t>& rows);
  void finish();

 private:
  void write(const void* data, size_t size);
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
  int32_t n_chunk_, chunks_written_ = 0;
  size_t chunk_values_;
};

// Reads the header and tokens at open (checking the size of the whole file
// against them), then the chunks in order.
class KldBaseReader {
 public:
  explicit KldBaseReader(const std::string& path);
  ~KldBaseReader();
  KldBaseReader(const KldBaseReader&) = delete;
  KldBaseReader& operator=(const KldBaseReader&) = delete;

  int32_t n_ctx() const { return n_ctx_; }
  int32_t n_vocab() const { return n_vocab_; }
  int32_t n_chunk() const { return n_chunk_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  // The next chunk's rows into `rows` (resized).
  void read_chunk(std::vector<uint16_t>& rows);

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  int32_t n_ctx_ = 0, n_vocab_ = 0, n_chunk_ = 0, chunks_read_ = 0;
  std::vector<int32_t> tokens_;
};

}  // namespace moe
