#include "convert/quantize_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <vector>

#include "core/error.h"
#include "core/interrupt.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_set_writer.h"
#include "core/output_guard.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"

namespace moe {

namespace {

// ggml's GGML_QNT_VERSION, which llama-quantize writes as general.quantization_version.
constexpr uint32_t kQuantizationVersion = 2;
// Rows are converted this many elements at a time (16 MiB of floats): big
// enough to keep every thread busy, small enough that memory stays flat.
constexpr int64_t kChunkElements = int64_t{4} << 20;
// Unconverted tensors are copied in slices of this many bytes.
constexpr size_t kCopyBytes = size_t{64} << 20;

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

double mib(uint64_t bytes) { return static_cast<double>(bytes) / 1024.0 / 1024.0; }

bool is_float_type(GgmlType t) { return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16; }

// llama_format_tensor_shape: four dimensions, trailing ones included.
std::string llama_shape_string(const std::vector<int64_t>& shape) {
  std::string s = strfmt("%5lld", static_cast<long long>(shape.at(0)));
  for (size_t d = 1; d < 4; ++d) s += strfmt(", %5lld", static_cast<long long>(d < shape.size() ? shape[d] : 1));
  return s;
}

// Lets the kernel drop input pages once they are converted, so that a file
// bigger than RAM streams through instead of filling memory with mapped
// pages (llama-quantize unmaps each tensor for the same reason). Rounding
// out to whole pages may drop a neighbour's page too: it is just read again.
void release_pages(const GgufFile& in, const GgufTensorInfo& t, const uint8_t* p, size_t n) {
  static const long page = ::sysconf(_SC_PAGESIZE);
  if (n == 0 || page <= 0) return;
  const uintptr_t base = reinterpret_cast<uintptr_t>(in.shards().at(t.shard).data);
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p);
  const uintptr_t first = base + (begin - base) / page * page;
  ::madvise(reinterpret_cast<void*>(first), begin + n - first, MADV_DONTNEED);  // advisory: failure is harmless
}

// Copies the metadata the way llama-quantize does (gguf_set_kv, then
// gguf_set_val_u32, which removes a key and appends it): every key in file
// order, split keys dropped, quantization_version and file_type last.
// With an importance matrix, llama-quantize then records where it came from
// (its kv overrides: strings cut to 127 bytes, counts as u32).
void copy_metadata(const GgufFile& in, GgufSetWriter& w, const QuantizeFileOptions& opts) {
  for (const GgufKv& kv : in.metadata()) w.set(kv.key, kv.value);
  for (const char* key : {"general.quantization_version", "general.file_type", "split.no", "split.count",
                          "split.tensors.count"})
    w.remove(key);
  w.set("general.quantization_version", GgufValue::u32(kQuantizationVersion));
  w.set("general.file_type", GgufValue::u32(static_cast<uint32_t>(opts.plan.file_type)));
  const ImportanceMatrix* im = opts.imatrix;
  if (!im || im->weights.empty()) return;
  w.remove("quantize.imatrix.file");
  w.set("quantize.imatrix.file", GgufValue::string(opts.imatrix_path.substr(0, 127)));
  if (!im->datasets.empty()) {
    w.remove("quantize.imatrix.dataset");
    w.set("quantize.imatrix.dataset", GgufValue::string(im->datasets[0].substr(0, 127)));
  }
  w.remove("quantize.imatrix.entries_count");
  w.set("quantize.imatrix.entries_count", GgufValue::u32(static_cast<uint32_t>(im->weights.size())));
  if (im->chunk_count > 0) {
    w.remove("quantize.imatrix.chunks_count");
    w.set("quantize.imatrix.chunks_count", GgufValue::u32(static_cast<uint32_t>(im->chunk_count)));
  }
}

// The importance of tensor t's input columns: n_slices rows of n_per_row,
// slice i for the i-th equal block of t's rows. One per expert of a 3-D
// tensor; or, for a 2-D one whose rows are the outputs of several products
// side by side, one per product (DeepSeek-V4's attn_output_a: llama-imatrix
// keeps one slice per group, the groups' rows one block each, which
// llama-quantize 3.22.1 refuses); or one for all. A very-low-bit type
// without one is refused, as llama-quantize does ("the result will be
// garbage").
struct TensorImportance {
  const float* values = nullptr;
  int64_t n_slices = 1;
};

TensorImportance tensor_imatrix(const QuantizeFileOptions& opts, const GgufTensorInfo& t, bool required) {
  TensorImportance w;
  if (opts.imatrix) {
    const auto it = opts.imatrix->weights.find(t.name);
    if (it != opts.imatrix->weights.end()) {
      const int64_t ne0 = std::max<int64_t>(1, t.ne(0)), values = static_cast<int64_t>(it->second.size());
      const int64_t k = values / ne0;
      const bool experts = values == ne0 * t.ne(2);
      const bool row_blocks = t.ne(2) == 1 && values % ne0 == 0 && k > 1 && t.ne(1) % k == 0;
      if (experts || row_blocks) w = {it->second.data(), experts ? t.ne(2) : k};
      else if (t.name != "token_embd.weight" && t.name != "per_layer_token_embd.weight")
        throw_error("importance matrix %s: %zu values for tensor '%s', which has %lld input columns (ne0 x ne2); "
                    "was it made for another model?",
                    opts.imatrix_path.c_str(), it->second.size(), t.name.c_str(),
                    static_cast<long long>(t.ne(0) * t.ne(2)));
    }
  }
  MOE_ASSERT(w.values || !required,
             "tensor '%s': %s needs an importance matrix, and %s (a very-low-bit type quantized blind is garbage)",
             t.name.c_str(), opts.imatrix ? "this type" : "this quantization",
             opts.imatrix ? "the importance matrix has no entry for it" : "none was given (pass --imatrix FILE)");
  return w;
}

// Refuses, before anything is written, what the main loop could not do.
void check_convertible(const GgufFile& in, const GgufTensorInfo& t, GgmlType to, bool allow_requantize) {
  if (t.type == to) return;
  if (!is_float_type(t.type) && !allow_requantize)
    throw_error("%s: tensor '%s' is already quantized (%s); requantizing it to %s is disabled "
                "(pass --allow-requantize to convert it anyway)",
                in.path().c_str(), t.name.c_str(), ggml_type_name(t.type), ggml_type_name(to));
  if (!is_float_type(t.type) && !ggml_type_traits(t.type).can_dequantize)
    throw_error("%s: tensor '%s' has type %s, which moe.cpp cannot decode", in.path().c_str(), t.name.c_str(),
                ggml_type_name(t.type));
  MOE_ASSERT(quantize_rows_supported(to), "%s: tensor '%s': moe.cpp cannot quantize to %s", in.path().c_str(),
             t.name.c_str(), ggml_type_name(to));
}

// Converts one tensor chunk by chunk, appending to the writer.
class TensorConverter {
 public:
  TensorConverter(const GgufFile& in, ThreadPool& pool, GgufSetWriter& w, ProgressBar& bar)
      : in_(in), pool_(pool), w_(w), bar_(bar) {}

  void copy(const GgufTensorInfo& t) {
    for (uint64_t off = 0; off < t.nbytes; off += kCopyBytes) {
      throw_if_interrupted();
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kCopyBytes, t.nbytes - off));
      w_.write_tensor_part(t.data + off, n);
      release_pages(in_, t, t.data + off, n);
      bar_.advance(n, t.name);
    }
  }

  // imatrix: its slices of n_per_row weights, each for an equal block of
  // rows (an expert's, a group's; tensor_imatrix), or no values.
  uint64_t convert(const GgufTensorInfo& t, GgmlType to, const TensorImportance& imatrix) {
    if (t.n_elements == 0) return 0;  // an empty tensor has no rows (and shape[0] may be 0)
    const int64_t n_per_row = t.shape.at(0);
    const int64_t n_rows = t.n_rows();
    const size_t row_in = ggml_row_size(t.type, n_per_row);
    const size_t row_out = ggml_row_size(to, n_per_row);
    const int64_t rows_per_slice = std::max<int64_t>(1, n_rows / imatrix.n_slices);
    const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkElements / std::max<int64_t>(1, n_per_row));
    const int64_t chunk_rows = std::min(rows_per_chunk, n_rows);
    out_.resize(static_cast<size_t>(chunk_rows) * row_out);
    if (t.type != GgmlType::F32) f32_.resize(static_cast<size_t>(chunk_rows * n_per_row));
    uint64_t written = 0;
    for (int64_t r0 = 0; r0 < n_rows; r0 += chunk_rows) {
      throw_if_interrupted();
      const int64_t nr = std::min(chunk_rows, n_rows - r0);
      const uint8_t* src = t.data + static_cast<size_t>(r0) * row_in;
      pool_.parallel_for(nr, [&](int64_t b, int64_t e, int) {
        const int64_t n = (e - b) * n_per_row;
        const float* x;
        if (t.type == GgmlType::F32) {
          x = reinterpret_cast<const float*>(src) + b * n_per_row;
        } else {
          float* dst = f32_.data() + b * n_per_row;
          dequantize_row_ref(t.type, src + static_cast<size_t>(b) * row_in, dst, n);
          x = dst;
        }
        // A run of rows never crosses a slice: each has its own weights.
        for (int64_t r = b; r < e;) {
          const int64_t slice = (r0 + r) / rows_per_slice;
          const int64_t end = std::min(e, (slice + 1) * rows_per_slice - r0);
          quantize_rows(to, x + (r - b) * n_per_row, out_.data() + static_cast<size_t>(r) * row_out, end - r,
                        n_per_row, imatrix.values ? imatrix.values + slice * n_per_row : nullptr);
          r = end;
        }
      });
      const size_t bytes = static_cast<size_t>(nr) * row_out;
      w_.write_tensor_part(out_.data(), bytes);
      release_pages(in_, t, src, static_cast<size_t>(nr) * row_in);
      written += bytes;
      bar_.advance(static_cast<uint64_t>(nr) * row_in, t.name);
    }
    return written;
  }

 private:
  const GgufFile& in_;
  ThreadPool& pool_;
  GgufSetWriter& w_;
  ProgressBar& bar_;
  std::vector<float> f32_;    // dequantized rows of a non-F32 source
  std::vector<uint8_t> out_;  // converted rows
};

}  // namespace

QuantizeFileResult quantize_gguf_file(const std::string& in_path, const std::string& out_path,
                                      const QuantizeFileOptions& opts) {
  const double t0 = now_s();
  const GgufFile in = GgufFile::open(in_path);
  const PlanModel model = plan_model_from_gguf(in);

  std::vector<PlanTensor> plan_in;
  std::vector<std::string> names;
  for (const GgufTensorInfo& t : in.tensors()) {
    plan_in.push_back({t.name, t.shape, t.type});
    names.push_back(t.name);
  }
  PlanOptions plan_opts = opts.plan;
  plan_opts.has_imatrix = opts.imatrix && !opts.imatrix->weights.empty();
  const QuantPlan plan = plan_tensor_types(model, plan_in, plan_opts);
  const std::vector<size_t> order = llama_tensor_order(names);
  for (size_t i = 0; i < in.tensors().size(); ++i) {
    check_convertible(in, in.tensors()[i], plan.types[i], opts.allow_requantize);
    // Before anything is written: a missing imatrix, or one for another model.
    if (plan.types[i] != in.tensors()[i].type || !opts.imatrix)
      tensor_imatrix(opts, in.tensors()[i], plan.requires_imatrix[i]);
  }

  GgufSetWriter w(out_path, opts.split);
  copy_metadata(in, w, opts);
  QuantizeFileResult res;
  for (size_t i : order) {
    const GgufTensorInfo& t = in.tensors()[i];
    w.add_tensor(t.name, plan.types[i], gguf_trimmed_shape(t.shape));
    res.bytes_in += t.nbytes;
    res.n_elements += static_cast<uint64_t>(t.n_elements);
  }
  res.n_tensors = order.size();
  res.n_fallback = plan.n_fallback;
  w.begin();
  // The shards' names are known now, before anything is renamed into place.
  for (const std::string& out : w.paths())
    for (const GgufShard& s : in.shards()) refuse_output_over_input(out, s.path);

  ThreadPool pool(std::max(1, opts.n_threads));
  ProgressBar bar("quantize", res.bytes_in, opts.progress);
  TensorConverter conv(in, pool, w, bar);
  for (size_t k = 0; k < order.size(); ++k) {
    const GgufTensorInfo& t = in.tensors()[order[k]];
    const GgmlType to = plan.types[order[k]];
    uint64_t new_size = t.nbytes;
    if (to == t.type) conv.copy(t);
    else new_size = conv.convert(t, to, tensor_imatrix(opts, t, plan.requires_imatrix[order[k]]));
    res.bytes_out += new_size;
    if (opts.verbose && opts.log) {
      std::fprintf(opts.log, "[%4zu/%4zu] %-36s - [%s], type = %6s, ", k + 1, order.size(), t.name.c_str(),
                   llama_shape_string(t.shape).c_str(), ggml_type_name(t.type));
      if (to == t.type) std::fprintf(opts.log, "size = %8.3f MiB\n", mib(t.nbytes));
      else std::fprintf(opts.log, "converting to %s .. size = %8.2f MiB -> %8.2f MiB%s\n", ggml_type_name(to),
                        mib(t.nbytes), mib(new_size), plan.fell_back[order[k]] ? " (fallback)" : "");
    }
    if (opts.after_tensor) opts.after_tensor(k);
  }
  throw_if_interrupted();
  bar.finish();
  w.finish();
  res.paths = w.paths();
  res.seconds = now_s() - t0;
  return res;
}

}  // namespace moe
