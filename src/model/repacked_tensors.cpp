#include "model/repacked_tensors.h"

#include "core/error.h"
#include "core/mapped_file.h"
#include "gguf/gguf_reader.h"
#include "quant/interleaved.h"

namespace moe {

bool RepackedTensors::repack(TensorView& t, const GgufFile& file) {
  if (!can_interleave(t)) return false;
  const MappedFile* owner = nullptr;
  for (const MappedFile* m : file.mappings())
    if (m->contains(t.data)) owner = m;
  if (owner == nullptr || owner->mapped()) return false;
  HostBuffer buf(interleaved_bytes(t));
  if (buf.data() == nullptr)
    throw_error("cannot repack '%s' %s: %zu bytes of memory are not available (load with --no-repack)",
                t.name.c_str(), t.shape_string().c_str(), interleaved_bytes(t));
  interleave_tensor(t, buf.data());
  owner->release(t.data, t.nbytes());
  t = interleaved_view(t, buf.data());
  bytes_ += buf.size();
  buffers_.push_back(std::move(buf));
  return true;
}

}  // namespace moe
