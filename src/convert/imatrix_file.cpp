#include "convert/imatrix_file.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "core/atomic_file.h"
#include "core/error.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"

namespace moe {

namespace {

constexpr std::string_view kSums = ".in_sum2";
constexpr std::string_view kCounts = ".counts";

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const float* f32_data(const std::string& path, const GgufTensorInfo& t) {
  MOE_ASSERT(t.type == GgmlType::F32, "%s: imatrix tensor '%s' has type %s (expected f32)", path.c_str(),
             t.name.c_str(), ggml_type_name(t.type));
  return reinterpret_cast<const float*>(t.data);
}

// A file as stored: GGUF sums and counts, or the legacy means with counts {ncall}.
struct StoredImatrix {
  ImatrixSums sums;
  bool legacy = false;
};

StoredImatrix read_gguf(const std::string& path) {
  const GgufFile f = GgufFile::open(path, /*map=*/true, /*whole_set=*/false);
  StoredImatrix st;
  ImatrixSums& im = st.sums;
  MOE_ASSERT(!f.tensors().empty(), "%s: the importance matrix holds no tensors", path.c_str());
  // llama-quantize refuses a GGUF imatrix without its metadata: it cannot
  // tell how the sums were normalised.
  MOE_ASSERT(f.has("imatrix.datasets") && f.has("imatrix.chunk_count") && f.has("imatrix.chunk_size"),
             "%s: missing imatrix metadata (imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size); "
             "is this an importance matrix from llama-imatrix or moe-imatrix?",
             path.c_str());
  im.datasets = f.get_string_array("imatrix.datasets");
  im.chunk_count = static_cast<int32_t>(f.get_u32("imatrix.chunk_count"));
  im.chunk_size = static_cast<int32_t>(f.get_u32("imatrix.chunk_size"));

  std::map<std::string, std::pair<const GgufTensorInfo*, const GgufTensorInfo*>> parts;
  for (const GgufTensorInfo& t : f.tensors()) {
    if (ends_with(t.name, kSums)) parts[t.name.substr(0, t.name.size() - kSums.size())].first = &t;
    else if (ends_with(t.name, kCounts)) parts[t.name.substr(0, t.name.size() - kCounts.size())].second = &t;
  }
  for (const auto& [name, sc] : parts) {
    const auto [sums_t, counts_t] = sc;
    MOE_ASSERT(sums_t && counts_t, "%s: '%s' has %s but no %s", path.c_str(), name.c_str(),
               sums_t ? "in_sum2" : "counts", sums_t ? "counts" : "in_sum2");
    const float* sums = f32_data(path, *sums_t);
    const float* counts = f32_data(path, *counts_t);
    const int64_t n_counts = counts_t->n_elements;
    MOE_ASSERT(n_counts > 0 && sums_t->n_elements % n_counts == 0,
               "%s: '%s' has %lld sums for %lld counts (expected a whole number of sums per count)", path.c_str(),
               name.c_str(), static_cast<long long>(sums_t->n_elements), static_cast<long long>(n_counts));
    ImatrixEntry& e = im.entries[name];
    e.sums.assign(sums, sums + sums_t->n_elements);
    e.counts.resize(static_cast<size_t>(n_counts));
    // Counts are stored as f32 and read back as integers (lround).
    for (int64_t i = 0; i < n_counts; ++i) e.counts[i] = std::lround(counts[i]);
  }
  return st;
}

// Reads the legacy binary format, checking every length against the file.
class DatReader {
 public:
  explicit DatReader(const std::string& path) : path_(path) {
    std::ifstream in(path, std::ios::binary);
    MOE_ASSERT(in, "cannot open importance matrix '%s': %s", path.c_str(), std::strerror(errno));
    bytes_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  bool at_end() const { return pos_ == bytes_.size(); }
  size_t remaining() const { return bytes_.size() - pos_; }
  int32_t i32(const char* what) {
    int32_t v;
    take(&v, sizeof v, what);
    return v;
  }
  void take(void* dst, size_t n, const char* what) {
    MOE_ASSERT(n <= bytes_.size() - pos_, "%s: truncated legacy importance matrix (reading %s at byte %zu of %zu)",
               path_.c_str(), what, pos_, bytes_.size());
    std::memcpy(dst, bytes_.data() + pos_, n);
    pos_ += n;
  }
  std::string c_string(size_t n, const char* what) {
    std::string s(n, '\0');
    take(s.data(), n, what);
    s.resize(std::strlen(s.c_str()));  // llama.cpp reads names as C strings
    return s;
  }

 private:
  std::string path_;
  std::string bytes_;
  size_t pos_ = 0;
};

StoredImatrix read_dat(const std::string& path) {
  DatReader r(path);
  StoredImatrix st;
  st.legacy = true;
  ImatrixSums& im = st.sums;
  const int32_t n_entries = r.i32("the entry count");
  MOE_ASSERT(n_entries >= 1, "%s: not an importance matrix (neither GGUF nor a legacy .dat with entries)",
             path.c_str());
  for (int32_t k = 0; k < n_entries; ++k) {
    const int32_t len = r.i32("a name length");
    MOE_ASSERT(len > 0 && len < 4096, "%s: entry %d has a name length of %d", path.c_str(), k + 1, len);
    const std::string name = r.c_string(static_cast<size_t>(len), "a name");
    const int32_t ncall = r.i32("a call count");
    const int32_t nval = r.i32("a value count");
    MOE_ASSERT(nval >= 1, "%s: entry '%s' has %d values", path.c_str(), name.c_str(), nval);
    // Checked before allocating: a count is not trusted beyond the file.
    MOE_ASSERT(static_cast<size_t>(nval) <= r.remaining() / sizeof(float),
               "%s: truncated legacy importance matrix (entry '%s' claims %d values, %zu bytes are left)",
               path.c_str(), name.c_str(), nval, r.remaining());
    ImatrixEntry& e = im.entries[name];
    e.sums.resize(static_cast<size_t>(nval));
    r.take(e.sums.data(), e.sums.size() * sizeof(float), "values");
    e.counts = {ncall};
  }
  if (!r.at_end()) {  // the chunk count and dataset name are optional
    im.chunk_count = r.i32("the chunk count");
    if (!r.at_end()) {
      const int32_t len = r.i32("the dataset name length");
      if (len > 0) im.datasets.push_back(r.c_string(static_cast<size_t>(len), "the dataset name"));
    }
  }
  return st;
}

bool starts_with_gguf_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MOE_ASSERT(in, "cannot open importance matrix '%s': %s", path.c_str(), std::strerror(errno));
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

StoredImatrix read_stored(const std::string& path) {
  return starts_with_gguf_magic(path) ? read_gguf(path) : read_dat(path);
}

}  // namespace

ImportanceMatrix load_importance_matrix(const std::string& path) {
  const StoredImatrix st = read_stored(path);
  ImportanceMatrix im;
  im.legacy = st.legacy;
  im.datasets = st.sums.datasets;
  im.chunk_count = st.sums.chunk_count;
  im.chunk_size = st.sums.chunk_size;
  for (const auto& [name, e] : st.sums.entries) {
    std::vector<float>& w = im.weights[name];
    w.resize(e.sums.size());
    if (st.legacy) {
      // Means scaled by ncall: dividing by ncall gives the means.
      const int64_t ncall = e.counts.empty() ? 0 : e.counts[0];
      for (size_t i = 0; i < w.size(); ++i) w[i] = ncall > 0 ? e.sums[i] / static_cast<float>(ncall) : e.sums[i];
    } else {
      // Sums per matrix over that matrix's count; a matrix that saw nothing gets 1.
      const size_t per = e.sums.size() / e.counts.size();
      for (size_t m = 0; m < e.counts.size(); ++m) {
        const float count = static_cast<float>(e.counts[m]);
        for (size_t i = 0; i < per; ++i) w[m * per + i] = count > 0.0f ? e.sums[m * per + i] / count : 1.0f;
      }
    }
  }
  for (const auto& [name, w] : im.weights)
    for (float v : w)
      MOE_ASSERT(std::isfinite(v), "%s: the importance matrix of '%s' holds a non-finite value (%g)", path.c_str(),
                 name.c_str(), static_cast<double>(v));
  return im;
}

void add_imatrix_file(ImatrixSums& sums, const std::string& path, int32_t chunk_size) {
  const StoredImatrix st = read_stored(path);
  for (const auto& [name, in] : st.sums.entries) {
    ImatrixEntry& e = sums.entries[name];
    if (e.sums.empty()) e.sums.assign(in.sums.size(), 0.0f);
    MOE_ASSERT(e.sums.size() == in.sums.size(), "%s: '%s' has %zu values, but %zu were collected for it",
               path.c_str(), name.c_str(), in.sums.size(), e.sums.size());
    if (st.legacy) {
      // (sum / count) * ncall, back to a sum over ncall chunks of chunk_size.
      for (size_t j = 0; j < in.sums.size(); ++j) e.sums[j] += in.sums[j] * static_cast<float>(chunk_size);
      if (e.counts.empty()) e.counts.assign(1, 0);
      for (int64_t& c : e.counts) c += in.counts[0] * chunk_size;
    } else {
      for (size_t j = 0; j < in.sums.size(); ++j) e.sums[j] += in.sums[j];
      if (e.counts.empty()) e.counts.assign(in.counts.size(), 0);
      else if (e.counts.size() == 1 && in.counts.size() > 1) e.counts.resize(in.counts.size(), e.counts[0]);
      MOE_ASSERT(e.counts.size() == in.counts.size(), "%s: '%s' has %zu counts, but %zu were collected for it",
                 path.c_str(), name.c_str(), in.counts.size(), e.counts.size());
      for (size_t j = 0; j < in.counts.size(); ++j) e.counts[j] += in.counts[j];
    }
  }
  sums.datasets.insert(sums.datasets.end(), st.sums.datasets.begin(), st.sums.datasets.end());
  int64_t max_count = 0;
  for (const auto& [name, e] : sums.entries)
    for (int64_t c : e.counts) max_count = std::max(max_count, c);
  if (chunk_size > 0) sums.chunk_count = static_cast<int32_t>(max_count / chunk_size);
}

namespace {

void save_gguf(const ImatrixSums& s, const std::string& path) {
  GgufWriter w(path);
  w.set("general.type", GgufValue::string("imatrix"));
  w.set("imatrix.datasets", GgufValue::array_of_strings(s.datasets));
  w.set("imatrix.chunk_count", GgufValue::u32(static_cast<uint32_t>(s.chunk_count)));
  w.set("imatrix.chunk_size", GgufValue::u32(static_cast<uint32_t>(s.chunk_size)));
  std::vector<std::vector<float>> data;  // in_sum2, counts, in_sum2, ... in name order
  for (const auto& [name, e] : s.entries) {
    const int64_t nmat = static_cast<int64_t>(e.counts.size());
    const int64_t nval = static_cast<int64_t>(e.sums.size());
    if (nval == 0 || nmat == 0) continue;
    // ggml writes only the dimensions up to the last one above 1.
    w.add_tensor(name + std::string(kSums), GgmlType::F32,
                 nmat > 1 ? std::vector<int64_t>{nval / nmat, nmat} : std::vector<int64_t>{nval});
    w.add_tensor(name + std::string(kCounts), GgmlType::F32,
                 nmat > 1 ? std::vector<int64_t>{1, nmat} : std::vector<int64_t>{1});
    data.push_back(e.sums);
    data.emplace_back(e.counts.begin(), e.counts.end());
  }
  w.begin();
  for (const std::vector<float>& d : data) w.write_tensor_data(d.data(), d.size() * sizeof(float));
  w.finish();
}

void put_i32(std::string& out, int32_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }

void save_dat(const ImatrixSums& s, const std::string& path) {
  std::string out;
  std::vector<const std::pair<const std::string, ImatrixEntry>*> kept;
  for (const auto& kv : s.entries) {
    bool any = false;
    for (int64_t c : kv.second.counts) any = any || c != 0;
    if (any) kept.push_back(&kv);  // the legacy format cannot say "no data"
  }
  put_i32(out, static_cast<int32_t>(kept.size()));
  const int64_t chunk = std::max<int32_t>(1, s.chunk_size);
  for (const auto* kv : kept) {
    const ImatrixEntry& e = kv->second;
    put_i32(out, static_cast<int32_t>(kv->first.size()));
    out += kv->first;
    // Chunks seen, rounded up so that a partly seen chunk is not zero.
    const int64_t max_count = *std::max_element(e.counts.begin(), e.counts.end());
    const int32_t ncall = static_cast<int32_t>((max_count + chunk - 1) / chunk);
    put_i32(out, ncall);
    const int32_t nval = static_cast<int32_t>(e.sums.size());
    const int32_t nmat = static_cast<int32_t>(e.counts.size());
    put_i32(out, nval);
    for (int32_t i = 0; i < nval; ++i) {
      float count = static_cast<float>(e.counts[static_cast<size_t>(i / (nval / nmat))]);
      float value = e.sums[static_cast<size_t>(i)];
      if (count == 0.0f) value = count = 1.0f;  // a matrix that saw nothing: weight 1
      const float v = (value / count) * static_cast<float>(ncall);
      out.append(reinterpret_cast<const char*>(&v), sizeof v);
    }
  }
  put_i32(out, s.chunk_count);
  const std::string dataset = s.datasets.empty() ? std::string() : s.datasets.back();
  put_i32(out, static_cast<int32_t>(dataset.size()));
  out += dataset;
  write_file_atomic(path, out);
}

}  // namespace

void save_importance_matrix(const ImatrixSums& sums, const std::string& path, bool legacy) {
  if (legacy) save_dat(sums, path);
  else save_gguf(sums, path);
}

void filter_importance_matrix(ImportanceMatrix& im, const std::vector<std::string>& include,
                              const std::vector<std::string>& exclude) {
  auto matches_any = [](const std::string& name, const std::vector<std::string>& subs) {
    for (const std::string& s : subs)
      if (name.find(s) != std::string::npos) return true;
    return false;
  };
  for (auto it = im.weights.begin(); it != im.weights.end();)
    it = matches_any(it->first, exclude) ? im.weights.erase(it) : std::next(it);
  if (include.empty()) return;
  for (auto it = im.weights.begin(); it != im.weights.end();)
    it = matches_any(it->first, include) ? std::next(it) : im.weights.erase(it);
}

}  // namespace moe
