// Writing a whole file so that readers see the old file or the new one,
// never a part: the text goes to a temporary file beside the target, is
// flushed to disk, and is renamed over the target.
#pragma once

#include <string>
#include <string_view>

namespace moe {

// Throws moe::Error naming the path and the system's reason; on failure the
// target is untouched and the temporary file removed.
void write_file_atomic(const std::string& path, std::string_view contents);

}  // namespace moe
