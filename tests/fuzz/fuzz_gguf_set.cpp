// Fuzz target: gguf-split sets and importance matrices from arbitrary bytes.
//
// The input is cut at each "\0SHARD\0" into at most 4 pieces, written as
// fuzz-0000K-of-0000N.gguf (N: the number of pieces) into a directory of
// this process; GgufFile::open on the first must load the whole set (every
// shard mmapped, split.* keys checked against each other and the names) or
// throw moe::Error naming the shard. The whole input is also read as an
// importance matrix (GGUF or llama-imatrix's legacy .dat), which must load
// or throw moe::Error. The sanitizers catch everything else.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "convert/imatrix_file.h"
#include "core/error.h"
#include "gguf/gguf_reader.h"

using namespace moe;

namespace {

constexpr std::string_view kSeparator{"\0SHARD\0", 7};
constexpr size_t kMaxShards = 4;

const std::string& work_dir() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/moe-fuzz-set-XXXXXX";
    if (!::mkdtemp(tmpl)) std::abort();
    return std::string(tmpl);
  }();
  return dir;
}

void write_bytes(const std::string& path, std::string_view bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) std::abort();
  std::fclose(f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> pieces;
  for (size_t pos = 0;;) {
    const size_t next = input.find(kSeparator, pos);
    if (next == std::string_view::npos || pieces.size() + 1 == kMaxShards) {
      pieces.push_back(input.substr(pos));
      break;
    }
    pieces.push_back(input.substr(pos, next - pos));
    pos = next + kSeparator.size();
  }
  const std::string& dir = work_dir();
  char name[64];
  std::vector<std::string> paths;
  for (size_t k = 0; k < pieces.size(); ++k) {
    std::snprintf(name, sizeof name, "/fuzz-%05zu-of-%05zu.gguf", k + 1, pieces.size());
    paths.push_back(dir + name);
    write_bytes(paths.back(), pieces[k]);
  }
  try {
    const GgufFile f = GgufFile::open(paths[0]);
    // The reader promised every tensor lies inside its shard.
    uint64_t sum = 0;
    for (const GgufTensorInfo& t : f.tensors())
      if (t.nbytes > 0) sum += t.data[0] + t.data[t.nbytes - 1];
    if (sum == 0xffffffffffffffffull) std::abort();  // keeps the reads
    (void)f.total_size();
  } catch (const Error&) {
  }
  const std::string whole = dir + "/whole.imatrix";
  write_bytes(whole, input);
  try {
    const ImportanceMatrix im = load_importance_matrix(whole);
    double sum = 0;
    for (const auto& [n, w] : im.weights)
      for (float v : w) sum += v;
    (void)sum;
  } catch (const Error&) {
  }
  for (const std::string& p : paths) ::unlink(p.c_str());
  ::unlink(whole.c_str());
  return 0;
}
