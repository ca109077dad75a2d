// Importance matrices as llama-imatrix writes them, read the way
// llama-quantize reads them (tools/quantize: load_imatrix, prepare_imatrix).
//
// An importance matrix holds, for every weight matrix a model multiplies
// activations by, the sum over a text of each input column's squared
// activation: quantizers weight a column's rounding error by it. Two file
// formats exist:
//   - GGUF (general.type "imatrix"): tensors NAME.in_sum2 (f32, n_per_row
//     values per expert) and NAME.counts (f32, how many activations each
//     expert saw), plus imatrix.datasets / chunk_count / chunk_size;
//   - the legacy .dat: int32 entry count; per entry int32 name length, name,
//     int32 ncall, int32 nval, nval f32 (already means, scaled by ncall);
//     optionally int32 chunk count, int32 length and the dataset name.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moe {

struct ImportanceMatrix {
  // Per weight tensor name: the mean squared activation of each input
  // column, n_per_row values per expert (experts one after another).
  std::map<std::string, std::vector<float>> weights;
  std::vector<std::string> datasets;  // the text(s) it was computed on
  int32_t chunk_count = 0;            // chunks of text evaluated
  int32_t chunk_size = 0;             // tokens per chunk (0 in a legacy file)
  bool legacy = false;
};

// What llama-imatrix accumulates and its GGUF file stores: per weight tensor
// the sums of squared activations of each input column (n_per_row per
// matrix: per expert, or per head of a per-head product) and how many
// activations each matrix saw (one count for a dense tensor).
struct ImatrixEntry {
  std::vector<float> sums;
  std::vector<int64_t> counts;
};
struct ImatrixSums {
  std::map<std::string, ImatrixEntry> entries;
  std::vector<std::string> datasets;  // the texts, in order
  int32_t chunk_count = 0;
  int32_t chunk_size = 0;
};

// Writes llama-imatrix's GGUF format (general.type "imatrix", tensors in
// name order) or, with legacy, its .dat format (entries that saw nothing
// left out, means scaled by the number of chunks). Atomic: a temporary file
// renamed into place.
void save_importance_matrix(const ImatrixSums& sums, const std::string& path, bool legacy);

// Adds a file of either format to `sums`, as llama-imatrix --in-file does: a
// GGUF file's raw sums and counts are added; a legacy file holds means scaled
// by ncall, which become sums of ncall * chunk_size activations. Throws when
// an entry's size differs from what `sums` already holds.
void add_imatrix_file(ImatrixSums& sums, const std::string& path, int32_t chunk_size);

// Reads either format (GGUF when the file starts with "GGUF"); throws
// moe::Error naming the file and what is wrong with it. Columns of an expert
// that saw no token get weight 1, as in llama-quantize.
ImportanceMatrix load_importance_matrix(const std::string& path);

// llama-quantize's --exclude-weights / --include-weights: drops the entries
// whose name contains any excluded string, then keeps only those containing
// an included one (substring matches, not patterns).
void filter_importance_matrix(ImportanceMatrix& im, const std::vector<std::string>& include,
                              const std::vector<std::string>& exclude);

}  // namespace moe
