// Backslash escapes in command-line text, as llama.cpp processes them by
// default (-e/--escape) in -p, -sys, -r and --stop: \n \r \t \' \" \\ and
// \xHH become the characters they name; any other backslash is kept as
// written, so a Windows path or a regex survives.
#pragma once

#include <string>
#include <string_view>

namespace moe {

std::string process_escapes(std::string_view text);

}  // namespace moe
