#include "gguf/gguf_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <set>

#include "core/error.h"
#include "gguf/gguf_reader.h"

namespace moe {

GgufWriter::GgufWriter(std::string path, uint32_t alignment) : path_(std::move(path)), alignment_(alignment) {
  MOE_ASSERT(alignment != 0 && (alignment & (alignment - 1)) == 0, "GGUF alignment %u is not a power of two", alignment);
  tmp_path_ = strfmt("%s.tmp.%d", path_.c_str(), static_cast<int>(::getpid()));
}

GgufWriter::~GgufWriter() {
  if (!finished_) abandon();
}

void GgufWriter::abandon() noexcept {
  if (f_) {
    std::fclose(f_);
    f_ = nullptr;
  }
  if (begun_) ::unlink(tmp_path_.c_str());
}

void GgufWriter::set(const std::string& key, GgufValue value) {
  MOE_ASSERT(!begun_, "GgufWriter: cannot set '%s' after the header was written", key.c_str());
  MOE_ASSERT(!key.empty(), "GgufWriter: empty metadata key");
  if (key == "general.alignment") {
    MOE_ASSERT(value.type() == GgufType::UINT32, "general.alignment must be uint32, not %s", gguf_type_name(value.type()));
    const uint64_t a = value.as_u64();
    MOE_ASSERT(a != 0 && (a & (a - 1)) == 0, "general.alignment %" PRIu64 " is not a power of two", a);
    MOE_ASSERT(tensors_.empty(), "set general.alignment before declaring tensors");
    alignment_ = static_cast<uint32_t>(a);
  }
  for (auto& kv : kv_) {
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  }
  kv_.emplace_back(key, std::move(value));
}

void GgufWriter::remove(const std::string& key) {
  MOE_ASSERT(!begun_, "GgufWriter: cannot remove '%s' after the header was written", key.c_str());
  for (auto it = kv_.begin(); it != kv_.end(); ++it) {
    if (it->first == key) {
      if (key == "general.alignment") alignment_ = kGgufDefaultAlignment;
      kv_.erase(it);
      return;
    }
  }
}

const GgufValue* GgufWriter::find(const std::string& key) const {
  for (const auto& kv : kv_)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

size_t GgufWriter::add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape) {
  MOE_ASSERT(!begun_, "GgufWriter: cannot add tensor '%s' after the header was written", name.c_str());
  MOE_ASSERT(!name.empty(), "GgufWriter: empty tensor name");
  MOE_ASSERT(!shape.empty() && shape.size() <= static_cast<size_t>(kGgufMaxDims),
             "tensor '%s': %zu dimensions, expected 1..%d", name.c_str(), shape.size(), kGgufMaxDims);
  for (const auto& t : tensors_) MOE_ASSERT(t.name != name, "GgufWriter: duplicate tensor name '%s'", name.c_str());
  const uint64_t row_bytes = ggml_row_size(type, shape[0]);
  uint64_t rows = 1;
  for (size_t d = 1; d < shape.size(); ++d) {
    MOE_ASSERT(shape[d] >= 0, "tensor '%s': negative dimension", name.c_str());
    rows *= static_cast<uint64_t>(shape[d]);
  }
  uint64_t offset = 0;
  if (!tensors_.empty()) {
    const TensorDecl& last = tensors_.back();
    offset = (last.offset + last.nbytes + alignment_ - 1) / alignment_ * alignment_;
  }
  tensors_.push_back({name, type, shape, offset, row_bytes * rows});
  return tensors_.size() - 1;
}

void GgufWriter::write_bytes(const void* p, size_t n) {
  if (n == 0) return;
  if (std::fwrite(p, 1, n, f_) != n)
    throw_error("cannot write '%s': %s", tmp_path_.c_str(), std::strerror(errno));
  pos_ += n;
}

void GgufWriter::write_padding_to_alignment() {
  static const uint8_t zeros[256] = {};
  uint64_t pad = (alignment_ - pos_ % alignment_) % alignment_;
  while (pad > 0) {
    const size_t n = pad < sizeof zeros ? static_cast<size_t>(pad) : sizeof zeros;
    write_bytes(zeros, n);
    pad -= n;
  }
}

namespace {

struct HeaderSink {
  GgufWriter* w;
  std::vector<uint8_t> buf;  // the header is small; build it, then write once
  template <typename T>
  void put(T v) {
    const size_t at = buf.size();
    buf.resize(at + sizeof(T));
    std::memcpy(buf.data() + at, &v, sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    buf.insert(buf.end(), s.begin(), s.end());
  }
  void put_array_body(const GgufValue& v) {
    put<uint32_t>(static_cast<uint32_t>(v.array_type()));
    put<uint64_t>(v.array_size());
    if (v.array_type() == GgufType::STRING) {
      for (const auto& s : v.strings()) put_string(s);
    } else if (v.array_type() == GgufType::ARRAY) {
      for (const auto& a : v.arrays()) put_array_body(a);
    } else {
      buf.insert(buf.end(), v.raw().begin(), v.raw().end());
    }
  }
  void put_value(const GgufValue& v) {
    put<uint32_t>(static_cast<uint32_t>(v.type()));
    if (v.type() == GgufType::STRING) put_string(v.as_string());
    else if (v.is_array()) put_array_body(v);
    else buf.insert(buf.end(), v.raw().begin(), v.raw().end());
  }
};

}  // namespace

void GgufWriter::begin() {
  MOE_ASSERT(!begun_, "GgufWriter::begin called twice");
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!f_) throw_error("cannot create '%s': %s", tmp_path_.c_str(), std::strerror(errno));
  begun_ = true;
  HeaderSink h{this, {}};
  h.put<uint32_t>(kGgufMagic);
  h.put<uint32_t>(3);
  h.put<uint64_t>(tensors_.size());
  h.put<uint64_t>(kv_.size());
  for (const auto& kv : kv_) {
    h.put_string(kv.first);
    h.put_value(kv.second);
  }
  for (const auto& t : tensors_) {
    h.put_string(t.name);
    h.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) h.put<uint64_t>(static_cast<uint64_t>(d));
    h.put<uint32_t>(static_cast<uint32_t>(t.type));
    h.put<uint64_t>(t.offset);
  }
  write_bytes(h.buf.data(), h.buf.size());
  write_padding_to_alignment();
  data_start_ = pos_;
  cur_tensor_ = 0;
  cur_written_ = 0;
}

void GgufWriter::write_tensor_part(const void* data, size_t size) {
  MOE_ASSERT(begun_ && !finished_, "GgufWriter: write_tensor_part outside begin()/finish()");
  while (size > 0) {
    MOE_ASSERT(cur_tensor_ < tensors_.size(), "GgufWriter: more tensor data than declared");
    const TensorDecl& t = tensors_[cur_tensor_];
    if (cur_written_ == 0) {
      // Pad up to this tensor's offset (alignment gap after the previous one).
      static const uint8_t zeros[64] = {};
      while (pos_ < data_start_ + t.offset) {
        const uint64_t gap = data_start_ + t.offset - pos_;
        write_bytes(zeros, gap < sizeof zeros ? static_cast<size_t>(gap) : sizeof zeros);
      }
    }
    const uint64_t want = t.nbytes - cur_written_;
    const size_t n = size < want ? size : static_cast<size_t>(want);
    write_bytes(data, n);
    data = static_cast<const uint8_t*>(data) + n;
    size -= n;
    cur_written_ += n;
    if (cur_written_ == t.nbytes) {
      ++cur_tensor_;
      cur_written_ = 0;
    }
  }
}

void GgufWriter::write_tensor_data(const void* data, size_t size) {
  MOE_ASSERT(begun_ && cur_tensor_ < tensors_.size(), "GgufWriter: no tensor left to write");
  MOE_ASSERT(cur_written_ == 0, "GgufWriter: tensor '%s' was partly written", tensors_[cur_tensor_].name.c_str());
  const TensorDecl& t = tensors_[cur_tensor_];
  MOE_ASSERT(size == t.nbytes, "tensor '%s': %zu bytes of data given, %" PRIu64 " expected for %s %s", t.name.c_str(),
             size, t.nbytes, ggml_type_name(t.type), strfmt("[%lld...]", static_cast<long long>(t.shape[0])).c_str());
  if (size == 0) {
    ++cur_tensor_;
    return;
  }
  write_tensor_part(data, size);
}

void GgufWriter::finish() {
  if (!begun_) begin();
  // Zero-sized tensors at the end need no bytes but still count as written.
  while (cur_tensor_ < tensors_.size() && tensors_[cur_tensor_].nbytes == 0 && cur_written_ == 0) ++cur_tensor_;
  MOE_ASSERT(cur_tensor_ == tensors_.size(), "GgufWriter: tensor '%s' and %zu more were not written",
             tensors_[cur_tensor_].name.c_str(), tensors_.size() - cur_tensor_ - 1);
  if (!tensors_.empty()) write_padding_to_alignment();  // llama.cpp pads the last tensor too
  if (std::fflush(f_) != 0 || ::fsync(::fileno(f_)) != 0)
    throw_error("cannot write '%s': %s", tmp_path_.c_str(), std::strerror(errno));
  if (std::fclose(f_) != 0) {
    f_ = nullptr;
    throw_error("cannot close '%s': %s", tmp_path_.c_str(), std::strerror(errno));
  }
  f_ = nullptr;
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0)
    throw_error("cannot rename '%s' to '%s': %s", tmp_path_.c_str(), path_.c_str(), std::strerror(errno));
  finished_ = true;
}

}  // namespace moe
