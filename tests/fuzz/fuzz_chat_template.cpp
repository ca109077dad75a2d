// Fuzz target: chat template detection and rendering. The input's first
// byte picks a family (or, when it is beyond the families, the rest of the
// input is taken as Jinja source for for_source()); the rest is split at NUL
// bytes into messages whose first byte picks the role. Rendering must give
// a prompt or a moe::Error, never anything else.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "chat/chat_template.h"
#include "core/error.h"

using namespace moe;

namespace {

constexpr ChatFamily kFamilies[] = {ChatFamily::deepseek2, ChatFamily::deepseek25, ChatFamily::deepseek3,
                                    ChatFamily::deepseek_r1, ChatFamily::chatml, ChatFamily::llama3,
                                    ChatFamily::mistral, ChatFamily::deepseek31, ChatFamily::deepseek32};
constexpr size_t kNumFamilies = sizeof(kFamilies) / sizeof(kFamilies[0]);

std::vector<ChatMessage> split_messages(std::string_view s) {
  static const char* const kRoles[] = {"system", "user", "assistant", "tool", ""};
  std::vector<ChatMessage> out;
  while (!s.empty()) {
    const size_t end = s.find('\0');
    std::string_view m = s.substr(0, end);
    const char* role = m.empty() ? "user" : kRoles[static_cast<uint8_t>(m[0]) % 5];
    out.push_back({role, std::string(m.empty() ? m : m.substr(1))});
    if (end == std::string_view::npos) break;
    s.remove_prefix(end + 1);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const uint8_t selector = data[0];
  (void)chat_family_detect(rest);
  (void)chat_family_from_name(rest);
  try {
    if (selector % 16 >= kNumFamilies) {
      // Jinja source up to the first NUL, messages after it.
      const size_t end = rest.find('\0');
      const std::string_view jinja = rest.substr(0, end);
      ChatTemplate t = ChatTemplate::for_source(jinja, "<s>", "</s>");
      const std::vector<ChatMessage> msgs =
          split_messages(end == std::string_view::npos ? std::string_view() : rest.substr(end + 1));
      (void)t.render(msgs, selector & 0x80);
    } else {
      const ChatFamily fam = kFamilies[selector % 16];
      (void)chat_family_name(fam);
      ChatTemplate t(fam, "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", (selector & 0x40) ? "Be brief." : "");
      t.set_thinking(selector & 0x20);
      const std::vector<ChatMessage> msgs = split_messages(rest);
      (void)t.render(msgs, selector & 0x80);
      (void)t.opens_reasoning();
    }
  } catch (const Error&) {
  }
  return 0;
}
