// Streaming quantization of a GGUF file, as llama.cpp's llama-quantize does
// it with or without an importance matrix: the same tensor types (quantize_plan.h),
// byte-identical tensor data, the same metadata (every key copied,
// general.quantization_version and general.file_type set last), tensors in
// the same order with the same alignment.
//
// Memory stays bounded whatever the file size: tensors are read from the
// input's mmap one chunk of rows at a time (pages released after each
// tensor), converted in parallel, and appended to the output; the output is a
// temporary file renamed into place only at the end (GgufWriter). Between
// chunks the work checks throw_if_interrupted(), so with
// install_interrupt_handler() a SIGINT/SIGTERM leaves any previous output
// untouched and no temporary file behind.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "convert/imatrix_file.h"
#include "convert/quantize_plan.h"
#include "gguf/gguf_set_writer.h"

namespace moe {

struct QuantizeFileOptions {
  PlanOptions plan;               // file type, --pure, --tensor-type
  int n_threads = 1;              // counts the calling thread
  bool allow_requantize = false;  // convert tensors that are already quantized
  bool progress = true;           // a ProgressBar on stderr (drawn only on a terminal)
  bool verbose = false;           // one line per tensor on `log`, as llama-quantize prints
  std::FILE* log = stdout;
  // Called after each tensor is written (index in output order); tests use
  // it to slow a run down so that it can be interrupted halfway.
  std::function<void(size_t)> after_tensor;
  SplitOptions split;             // --split-max-tensors / --split-max-size: write a gguf-split set
  // --imatrix: the importance matrix (already filtered by --include-weights /
  // --exclude-weights) and the path as given, which the output records.
  const ImportanceMatrix* imatrix = nullptr;
  std::string imatrix_path;
};

struct QuantizeFileResult {
  size_t n_tensors = 0;
  uint64_t n_elements = 0;
  uint64_t bytes_in = 0;   // tensor data, before
  uint64_t bytes_out = 0;  // tensor data, after
  int n_fallback = 0;      // tensors whose rows did not fit the planned type
  double seconds = 0;
  std::vector<std::string> paths;  // the file, or the shards of the set
};

// Quantizes in_path into out_path. Throws moe::Error naming the file and
// tensor at fault (unsupported file type or source type, an already
// quantized tensor without allow_requantize, I/O errors, an interruption).
QuantizeFileResult quantize_gguf_file(const std::string& in_path, const std::string& out_path,
                                      const QuantizeFileOptions& opts);

}  // namespace moe
