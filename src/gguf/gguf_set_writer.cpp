#include "gguf/gguf_set_writer.h"

#include <cctype>
#include <cmath>

#include "core/error.h"
#include "gguf/gguf_reader.h"

namespace moe {

uint64_t parse_split_size(const std::string& text) {
  size_t i = 0;
  double v = 0;
  try {
    v = std::stod(text, &i);
  } catch (const std::exception&) {
    throw_error("--split-max-size '%s': expected a size such as 500M or 2G", text.c_str());
  }
  std::string unit = text.substr(i);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double mult = 1;
  if (unit == "K") mult = 1000.0;
  else if (unit == "M") mult = 1000.0 * 1000;
  else if (unit == "G") mult = 1000.0 * 1000 * 1000;
  else if (!unit.empty()) throw_error("--split-max-size '%s': unknown unit '%s' (K, M or G)", text.c_str(), unit.c_str());
  if (!std::isfinite(v) || v <= 0) throw_error("--split-max-size '%s' must be positive", text.c_str());
  return static_cast<uint64_t>(v * mult);
}

GgufSetWriter::GgufSetWriter(std::string path, SplitOptions split, uint32_t alignment)
    : path_(std::move(path)), split_(split), alignment_(alignment) {}

GgufSetWriter::~GgufSetWriter() = default;  // an unfinished shard's writer removes its temporary file

void GgufSetWriter::set(const std::string& key, GgufValue value) {
  MOE_ASSERT(!begun_, "GgufSetWriter: set() after begin()");
  for (auto& kv : kv_)
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  kv_.emplace_back(key, std::move(value));
}

void GgufSetWriter::remove(const std::string& key) {
  for (size_t i = 0; i < kv_.size(); ++i)
    if (kv_[i].first == key) {
      kv_.erase(kv_.begin() + static_cast<std::ptrdiff_t>(i));
      return;
    }
}

size_t GgufSetWriter::add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape) {
  MOE_ASSERT(!begun_, "GgufSetWriter: add_tensor() after begin()");
  int64_t rows = 1;
  for (size_t i = 1; i < shape.size(); ++i) rows *= shape[i];
  const uint64_t nbytes = shape.empty() ? 0 : ggml_row_size(type, shape[0]) * static_cast<uint64_t>(rows);
  tensors_.push_back({name, type, shape, nbytes, 0});
  return tensors_.size() - 1;
}

void GgufSetWriter::begin() {
  MOE_ASSERT(!begun_, "GgufSetWriter: begin() twice");
  begun_ = true;
  int shard = 0;
  int64_t in_shard = 0;
  uint64_t bytes = 0;
  for (Decl& t : tensors_) {
    const uint64_t padded = (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
    const bool full = (split_.max_tensors > 0 && in_shard >= split_.max_tensors) ||
                      (split_.max_bytes > 0 && in_shard > 0 && bytes + padded > split_.max_bytes);
    if (full) {
      ++shard;
      in_shard = 0;
      bytes = 0;
    }
    t.shard = shard;
    ++in_shard;
    bytes += padded;
  }
  n_shards_ = shard + 1;
  MOE_ASSERT(n_shards_ <= 9999, "--split: %d shards are too many for the %%05d names llama.cpp expects", n_shards_);
  if (n_shards_ == 1) {
    paths_ = {path_};
  } else {
    const std::string prefix = path_.size() > 5 && path_.compare(path_.size() - 5, 5, ".gguf") == 0
                                   ? path_.substr(0, path_.size() - 5)
                                   : path_;
    for (int s = 0; s < n_shards_; ++s) paths_.push_back(gguf_split_path(prefix, s + 1, n_shards_));
  }
  open_shard(0);
}

void GgufSetWriter::open_shard(int s) {
  cur_ = std::make_unique<GgufWriter>(paths_[static_cast<size_t>(s)], alignment_);
  cur_shard_ = s;
  if (s == 0)
    for (const auto& kv : kv_) cur_->set(kv.first, kv.second);
  if (n_shards_ > 1) {
    // llama-gguf-split's order, so that the shards are byte for byte its own.
    cur_->set("split.no", GgufValue::u16(static_cast<uint16_t>(s)));
    cur_->set("split.tensors.count", GgufValue::i32(static_cast<int32_t>(tensors_.size())));
    cur_->set("split.count", GgufValue::u16(static_cast<uint16_t>(n_shards_)));
  }
  for (const Decl& t : tensors_)
    if (t.shard == s) cur_->add_tensor(t.name, t.type, t.shape);
  cur_->begin();
}

void GgufSetWriter::advance_to(size_t tensor) {
  const int want = tensor < tensors_.size() ? tensors_[tensor].shard : n_shards_ - 1;
  while (cur_shard_ < want) {
    cur_->finish();
    open_shard(cur_shard_ + 1);
  }
}

void GgufSetWriter::write_tensor_part(const void* data, size_t size) {
  MOE_ASSERT(begun_, "GgufSetWriter: write before begin()");
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    while (next_ < tensors_.size() && tensors_[next_].nbytes == 0) ++next_;  // empty tensors take no bytes
    MOE_ASSERT(next_ < tensors_.size(), "GgufSetWriter: more tensor data than declared");
    advance_to(next_);
    const uint64_t want = tensors_[next_].nbytes - cur_written_;
    const size_t n = size < want ? size : static_cast<size_t>(want);
    cur_->write_tensor_part(p, n);
    p += n;
    size -= n;
    cur_written_ += n;
    if (cur_written_ == tensors_[next_].nbytes) {
      ++next_;
      cur_written_ = 0;
    }
  }
}

void GgufSetWriter::write_tensor_data(const void* data, size_t size) {
  MOE_ASSERT(begun_ && next_ < tensors_.size(), "GgufSetWriter: no tensor left to write");
  const Decl& t = tensors_[next_];
  MOE_ASSERT(cur_written_ == 0, "GgufSetWriter: tensor '%s' was partly written", t.name.c_str());
  MOE_ASSERT(size == t.nbytes, "tensor '%s': %zu bytes of data given, %llu expected", t.name.c_str(), size,
             static_cast<unsigned long long>(t.nbytes));
  if (size == 0) {
    advance_to(next_);
    ++next_;
    return;
  }
  write_tensor_part(data, size);
}

void GgufSetWriter::finish() {
  if (!begun_) begin();
  advance_to(tensors_.size());  // shards after the last data written (only empty tensors left)
  cur_->finish();
}

}  // namespace moe
