#include "runtime/prefix_reuse.h"

#include <algorithm>
#include <string_view>

namespace moe {

PrefixReuse plan_prefix_reuse(const Tokenizer& tok, const std::string& rendered, const std::vector<int32_t>& cached,
                              const std::string& cached_text) {
  PrefixReuse p;
  const std::vector<int32_t> whole = tok.encode(rendered, /*add_special=*/false, /*parse_special=*/true);
  if (!cached_text.empty() && rendered.compare(0, cached_text.size(), cached_text) == 0) {
    const std::vector<int32_t> tail = tok.encode(std::string_view(rendered).substr(cached_text.size()), false, true);
    const bool seam_ok = !tail.empty() && tail.size() <= whole.size() &&
                         std::equal(tail.begin(), tail.end(), whole.end() - static_cast<std::ptrdiff_t>(tail.size()));
    if (seam_ok) {
      p.tokens = cached;
      p.tokens.insert(p.tokens.end(), tail.begin(), tail.end());
      p.keep = cached.size();
      return p;
    }
  }
  p.tokens = whole;
  while (p.keep < cached.size() && p.keep < whole.size() && cached[p.keep] == whole[p.keep]) ++p.keep;
  if (p.keep == whole.size() && p.keep > 0) --p.keep;  // forward() needs one new token for the logits
  return p;
}

}  // namespace moe
