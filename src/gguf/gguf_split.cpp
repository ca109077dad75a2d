// gguf-split sets, as llama.cpp's llama-gguf-split writes them and
// llama_model_load reads them: the first shard holds the metadata and
// split.no = 0, split.count = N, split.tensors.count = T; every shard is
// named PREFIX-%05d-of-%05d.gguf (1-based) and carries split.no/split.count;
// the tensors of all shards together are the model's T tensors.
#include <regex>

#include "core/mapped_file.h"
#include "gguf/gguf_reader.h"

namespace moe {

namespace {

// PREFIX and N from ".../PREFIX-00001-of-0000N.gguf", or nullopt.
struct SplitName {
  std::string prefix;
  int no = 0, count = 0;
};
std::optional<SplitName> split_name(const std::string& path) {
  static const std::regex re(R"(^(.*)-(\d{5})-of-(\d{5})\.gguf$)");
  std::smatch m;
  if (!std::regex_match(path, m, re)) return std::nullopt;
  return SplitName{m[1].str(), std::stoi(m[2].str()), std::stoi(m[3].str())};
}

}  // namespace

std::string gguf_split_path(const std::string& prefix, int no, int count) {
  return strfmt("%s-%05d-of-%05d.gguf", prefix.c_str(), no, count);
}

void GgufFile::open_split_set(bool map) {
  const uint64_t count = get_u64("split.count");
  const uint64_t no = get_u64_opt("split.no").value_or(0);
  if (count > 1 && no != 0)
    throw GgufError(strfmt("%s is shard %llu of %llu of a gguf-split set: give the first shard (-00001-of-%05llu.gguf)",
                           path_.c_str(), static_cast<unsigned long long>(no + 1),
                           static_cast<unsigned long long>(count), static_cast<unsigned long long>(count)));
  if (count <= 1) return;
  if (count > 9999) throw GgufError(strfmt("%s: split.count %llu is not a shard count", path_.c_str(),
                                           static_cast<unsigned long long>(count)));
  const uint64_t total = get_u64("split.tensors.count");
  const std::optional<SplitName> name = split_name(path_);
  if (!name || name->no != 1 || static_cast<uint64_t>(name->count) != count)
    throw GgufError(strfmt("%s: the first shard of a %llu-file gguf-split set must be named PREFIX-00001-of-%05llu.gguf "
                           "(the others are found by that name)",
                           path_.c_str(), static_cast<unsigned long long>(count), static_cast<unsigned long long>(count)));
  for (uint64_t i = 1; i < count; ++i) {
    const std::string p = gguf_split_path(name->prefix, static_cast<int>(i + 1), static_cast<int>(count));
    std::shared_ptr<const MappedFile> m;
    try {
      m = std::make_shared<const MappedFile>(p, map);
    } catch (const Error& e) {
      throw GgufError(strfmt("%s: shard %llu of %llu of the gguf-split set is missing or unreadable: %s", p.c_str(),
                             static_cast<unsigned long long>(i + 1), static_cast<unsigned long long>(count), e.what()));
    }
    GgufFile shard = parse(m->data(), m->size(), p);  // truncated or corrupt: the parser names the file
    const std::optional<uint64_t> s_no = shard.get_u64_opt("split.no");
    const std::optional<uint64_t> s_count = shard.get_u64_opt("split.count");
    if (s_no != i || s_count != count)
      throw GgufError(strfmt("%s does not belong to this gguf-split set: it says shard %s of %s, expected %llu of %llu",
                             p.c_str(), s_no ? std::to_string(*s_no + 1).c_str() : "?",
                             s_count ? std::to_string(*s_count).c_str() : "?", static_cast<unsigned long long>(i + 1),
                             static_cast<unsigned long long>(count)));
    for (GgufTensorInfo& t : shard.tensors_) {
      if (tensor_index_.count(t.name))
        throw GgufError(strfmt("%s: tensor '%s' is also in an earlier shard: the shards are from different sets",
                               p.c_str(), t.name.c_str()));
      t.shard = static_cast<uint32_t>(i);
      tensor_index_.emplace(t.name, tensors_.size());
      tensors_.push_back(std::move(t));
    }
    shards_.push_back(shard.shards_.front());
    shard_mappings_.push_back(std::move(m));
  }
  if (tensors_.size() != total)
    throw GgufError(strfmt("%s: the gguf-split set holds %zu tensors, its first shard says %llu (split.tensors.count): "
                           "a shard is from a different set",
                           path_.c_str(), tensors_.size(), static_cast<unsigned long long>(total)));
}

}  // namespace moe
