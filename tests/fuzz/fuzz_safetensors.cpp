// Fuzz target: the safetensors header parser (SafetensorsFile::parse) on
// arbitrary bytes, then what the converter reads: every tensor's info and
// its data as float32. Any input must give a file or a moe::Error.
#include <cstddef>
#include <cstdint>

#include "convert/safetensors.h"
#include "core/error.h"

using namespace moe;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    SafetensorsFile f = SafetensorsFile::parse(data, size, "fuzz.safetensors");
    for (const auto& [k, v] : f.metadata()) (void)(k.size() + v.size());
    for (const SafetensorInfo& t : f.tensors()) {
      (void)t.shape_string();
      if (f.find(t.name) != &t) __builtin_trap();
      // Small tensors only: converting is the converter's job, not the
      // parser's, and a 1 GB claim that tiles a 1 GB input is legal.
      if (t.n_elements <= 4096) {
        try { (void)tensor_to_f32(t); } catch (const Error&) {}
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
