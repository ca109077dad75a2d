// Chat templates: detection from the official Jinja sources (copied into
// tests/fixtures/chat-templates/) and rendering. Every expected string below
// was written by hand by following the template's own Jinja text for the
// same conversation (bos/eos as the template's bos_token/eos_token).
#include <doctest/doctest.h>

#include <string>

#include "chat/chat_template.h"
#include "core/error.h"
#include "model/deepseek2.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace moe;

namespace {

// DeepSeek-V4's is the one moe-convert writes (models/templates); the rest are fixtures.
std::string jinja(const std::string& name) {
  const std::string path = name == "deepseek-v4.jinja" ? std::string(MOE_MODELS_DIR) + "/templates/" + name
                                                       : test::local_fixture("chat-templates/" + name);
  const auto b = test::read_file(path);
  return std::string(b.begin(), b.end());
}

const std::string kDsBos = "<｜begin▁of▁sentence｜>", kDsEos = "<｜end▁of▁sentence｜>";

// system, user, assistant, user: the usual second turn.
const std::vector<ChatMessage> kTwoTurns = {
    {"system", "You are terse."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "2+2?"}};
const std::vector<ChatMessage> kOneUser = {{"user", "Hi"}};

ChatTemplate from_file(const std::string& file, const std::string& bos, const std::string& eos) {
  return ChatTemplate::for_source(jinja(file), bos, eos);
}

}  // namespace

TEST_CASE("chat template: detection from the official Jinja sources") {
  CHECK(chat_family_detect(jinja("deepseek-v2-chat.jinja")) == ChatFamily::deepseek2);
  CHECK(chat_family_detect(jinja("deepseek-v2.5.jinja")) == ChatFamily::deepseek25);
  CHECK(chat_family_detect(jinja("deepseek-v3.jinja")) == ChatFamily::deepseek3);
  CHECK(chat_family_detect(jinja("deepseek-r1.jinja")) == ChatFamily::deepseek_r1);
  CHECK(chat_family_detect(jinja("deepseek-v3.1.jinja")) == ChatFamily::deepseek31);
  CHECK(chat_family_detect(jinja("deepseek-v4.jinja")) == ChatFamily::deepseek4);
  CHECK(chat_family_detect(jinja("qwen2-chatml.jinja")) == ChatFamily::chatml);
  CHECK(chat_family_detect(jinja("llama-3-instruct.jinja")) == ChatFamily::llama3);
  CHECK(chat_family_detect(jinja("mistral-instruct.jinja")) == ChatFamily::mistral);
  CHECK_FALSE(chat_family_detect("{{ messages[0]['content'] }}").has_value());
  CHECK_THROWS_WITH_AS(ChatTemplate::for_source("{{ nothing }}", "", ""), doctest::Contains("--chat-template"), Error);
  // Kimi K2's and GLM-4's markers, as llama.cpp detects them.
  CHECK(chat_family_detect("{{'<|im_assistant|>assistant<|im_middle|>'}}") == ChatFamily::kimi_k2);
  CHECK(chat_family_detect("[gMASK]<sop>{% for m in messages %}<|{{ m.role }}|>{% endfor %}") == ChatFamily::glm4);
  for (const auto& n : {"deepseek2", "deepseek2.5", "deepseek3", "deepseek-r1", "deepseek3.1", "deepseek3.2", "chatml",
                        "llama3", "mistral", "kimi-k2", "chatglm4"})
    CHECK(std::string(chat_family_name(*chat_family_from_name(n))) == n);
  CHECK_FALSE(chat_family_from_name("vicuna").has_value());
}

TEST_CASE("chat template: DeepSeek-V3") {
  const ChatTemplate t = from_file("deepseek-v3.jinja", kDsBos, kDsEos);
  CHECK(t.render(kTwoTurns, true) ==
        "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜>");
  CHECK(t.render(kTwoTurns, false) ==
        "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>2+2?");
  CHECK(t.render(kOneUser, true) == "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>");
  // Several system messages are joined with a blank line, wherever they are.
  CHECK(t.render({{"system", "One."}, {"user", "Hi"}, {"system", "Two."}}, true) ==
        "<｜begin▁of▁sentence｜>One.\n\nTwo.<｜User｜>Hi<｜Assistant｜>");
  CHECK_FALSE(t.opens_reasoning());
}

TEST_CASE("chat template: DeepSeek-V2.5 keeps the last system message") {
  const ChatTemplate t = from_file("deepseek-v2.5.jinja", kDsBos, kDsEos);
  CHECK(t.render(kTwoTurns, true) ==
        "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜>");
  CHECK(t.render({{"system", "One."}, {"system", "Two."}, {"user", "Hi"}}, true) ==
        "<｜begin▁of▁sentence｜>Two.<｜User｜>Hi<｜Assistant｜>");
}

TEST_CASE("chat template: DeepSeek-R1 drops earlier reasoning and opens <think>") {
  const ChatTemplate t = from_file("deepseek-r1.jinja", kDsBos, kDsEos);
  const std::vector<ChatMessage> conv = {{"system", "You are terse."},
                                         {"user", "Hi"},
                                         {"assistant", "<think>\nhmm\n</think>\n\nHello!"},
                                         {"user", "2+2?"}};
  CHECK(t.render(conv, true) ==
        "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi<｜Assistant｜>\n\nHello!<｜end▁of▁sentence｜><｜User｜>2+2?"
        "<｜Assistant｜><think>\n");
  CHECK(t.render(conv, false) ==
        "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi<｜Assistant｜>\n\nHello!<｜end▁of▁sentence｜><｜User｜>2+2?");
  CHECK(t.render(kOneUser, true) == "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n");
  CHECK(t.opens_reasoning());
}

TEST_CASE("chat template: DeepSeek-V3.1 thinks or not, and earlier answers lose their reasoning") {
  ChatTemplate t = from_file("deepseek-v3.1.jinja", kDsBos, kDsEos);
  CHECK(t.can_toggle_thinking());
  const std::vector<ChatMessage> conv = {{"system", "You are terse."},
                                         {"system", "Be kind."},
                                         {"user", "Hi"},
                                         {"assistant", "hmm</think>Hello!"},
                                         {"user", "2+2?"}};
  const std::string history =
      "<｜begin▁of▁sentence｜>You are terse.\n\nBe kind.<｜User｜>Hi<｜Assistant｜></think>Hello!<｜end▁of▁sentence｜>"
      "<｜User｜>2+2?";
  CHECK(t.thinking());  // on unless turned off (llama.cpp's --reasoning-budget -1)
  CHECK(t.render(conv, true) == history + "<｜Assistant｜><think>");
  CHECK(t.opens_reasoning());
  CHECK(t.render(conv, false) == history);
  t.set_thinking(false);
  CHECK(t.render(conv, true) == history + "<｜Assistant｜></think>");
  CHECK_FALSE(t.opens_reasoning());
  // Only the first </think> ends the reasoning (split('</think>', 1)[1]).
  CHECK(t.render({{"user", "a"}, {"assistant", "r</think>x</think>y"}}, false) ==
        "<｜begin▁of▁sentence｜><｜User｜>a<｜Assistant｜></think>x</think>y<｜end▁of▁sentence｜>");
}

// Written by hand from DeepSeek-V4's Jinja (models/templates/deepseek-v4.jinja,
// as llama.cpp's converter embeds it): drop_thinking true, no tools.
TEST_CASE("chat template: DeepSeek-V4 thinks or not, joins user turns, keeps only the last answer's reasoning") {
  ChatTemplate t = from_file("deepseek-v4.jinja", kDsBos, kDsEos);
  CHECK(t.can_toggle_thinking());
  const std::vector<ChatMessage> conv = {{"system", "You are terse."}, {"user", "Hi"},  {"user", "there"},
                                         {"assistant", "hmm</think>Hello!"}, {"system", "Be kind."}, {"user", "2+2?"}};
  const std::string history =
      "<｜begin▁of▁sentence｜>You are terse.\n\nBe kind.<｜User｜>Hi\n\nthere<｜Assistant｜></think>Hello!"
      "<｜end▁of▁sentence｜><｜User｜>2+2?";
  CHECK(t.thinking());
  CHECK(t.render(conv, true) == history + "<｜Assistant｜><think>");
  CHECK(t.render(conv, false) == history);
  // An answer after the last user turn (continuing it) keeps its reasoning when thinking.
  const std::vector<ChatMessage> cont = {{"user", "Hi"}, {"assistant", "hmm</think>Hel"}};
  CHECK(t.render(cont, false) ==
        "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>hmm</think>Hel<｜end▁of▁sentence｜>");
  t.set_reasoning_effort("max");  // the preamble comes before the system text, only when thinking
  const std::string max = t.render(conv, true);
  CHECK(max.rfind("<｜begin▁of▁sentence｜>Reasoning Effort: Absolute maximum", 0) == 0);
  CHECK(max.find("unchecked.\n\nYou are terse.") != std::string::npos);
  t.set_thinking(false);
  CHECK(t.render(conv, true) == history + "<｜Assistant｜></think>");
  CHECK(t.render(cont, false) ==
        "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜></think>Hel<｜end▁of▁sentence｜>");
  CHECK_FALSE(t.opens_reasoning());
}

TEST_CASE("chat template: DeepSeek-V3.2's encoding, thinking on and off") {
  ChatTemplate t(ChatFamily::deepseek32, kDsBos, kDsEos);
  CHECK(t.can_toggle_thinking());
  const std::vector<ChatMessage> conv = {{"system", "You are terse."},
                                         {"user", "Hi"},
                                         {"assistant", "hmm</think>Hello!"},
                                         {"system", "Now in French."},
                                         {"user", "2+2?"}};
  // Every user turn opens the answer; only the last one, thinking, opens a
  // <think> block. System text stays where it is, not joined.
  const std::string history =
      "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi<｜Assistant｜></think>Hello!<｜end▁of▁sentence｜>"
      "Now in French.<｜User｜>2+2?<｜Assistant｜>";
  CHECK(t.render(conv, true) == history + "<think>");
  CHECK(t.render(conv, false) == history + "<think>");  // no separate generation prompt
  CHECK(t.opens_reasoning());
  t.set_thinking(false);
  CHECK(t.render(conv, true) == history + "</think>");
  CHECK_FALSE(t.opens_reasoning());
  // An answer after the last user turn keeps its reasoning when thinking (a
  // continued answer); otherwise reasoning is dropped.
  const std::vector<ChatMessage> cont = {{"user", "Hi"}, {"assistant", "plan</think>Part"}};
  CHECK(t.render(cont, true) ==
        "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜></think>Part<｜end▁of▁sentence｜>");
  t.set_thinking(true);
  CHECK(t.render(cont, true) ==
        "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>plan</think>Part<｜end▁of▁sentence｜>");
  CHECK_THROWS_WITH_AS(t.render({{"tool", "x"}}, true), doctest::Contains("deepseek3.2"), Error);
}

TEST_CASE("chat template: DeepSeek-V2-Chat") {
  const ChatTemplate t = from_file("deepseek-v2-chat.jinja", kDsBos, kDsEos);
  CHECK(t.render(kTwoTurns, true) ==
        "<｜begin▁of▁sentence｜>You are terse.\n\nUser: Hi\n\nAssistant: Hello!<｜end▁of▁sentence｜>User: 2+2?\n\nAssistant:");
  CHECK(t.render(kTwoTurns, false) ==
        "<｜begin▁of▁sentence｜>You are terse.\n\nUser: Hi\n\nAssistant: Hello!<｜end▁of▁sentence｜>User: 2+2?\n\n");
  CHECK(t.render(kOneUser, true) == "<｜begin▁of▁sentence｜>User: Hi\n\nAssistant:");
}

TEST_CASE("chat template: Qwen2 ChatML, with its default system prompt") {
  const ChatTemplate t = from_file("qwen2-chatml.jinja", "", "<|im_end|>");
  CHECK(t.render(kTwoTurns, true) ==
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!"
        "<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
  CHECK(t.render(kOneUser, true) ==
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n");
  CHECK(t.render(kOneUser, false) ==
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  // Plain ChatML (chosen by name) has no default system prompt.
  const ChatTemplate plain(ChatFamily::chatml, "", "");
  CHECK(plain.render(kOneUser, true) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST_CASE("chat template: Llama 3 Instruct trims contents") {
  const ChatTemplate t = from_file("llama-3-instruct.jinja", "<|begin_of_text|>", "<|eot_id|>");
  const std::vector<ChatMessage> conv = {
      {"system", "You are terse."}, {"user", " Hi \n"}, {"assistant", "Hello!"}, {"user", "2+2?"}};
  CHECK(t.render(conv, true) ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        "Hello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK(t.render(kOneUser, false) == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST_CASE("chat template: Mistral Instruct folds the system prompt into the first turn") {
  const ChatTemplate t = from_file("mistral-instruct.jinja", "<s>", "</s>");
  CHECK(t.render(kTwoTurns, true) == "<s> [INST] You are terse.\n\nHi [/INST] Hello!</s> [INST] 2+2? [/INST]");
  CHECK(t.render(kOneUser, true) == "<s> [INST] Hi [/INST]");
  // raise_exception in the template: roles must alternate.
  CHECK_THROWS_WITH_AS(t.render({{"user", "a"}, {"user", "b"}}, true), doctest::Contains("alternating"), Error);
  CHECK_THROWS_AS(t.render({{"assistant", "a"}}, true), Error);
}

TEST_CASE("chat template: roles outside system/user/assistant are refused") {
  const ChatTemplate t(ChatFamily::deepseek3, kDsBos, kDsEos);
  CHECK_THROWS_WITH_AS(t.render({{"tool", "x"}}, true), doctest::Contains("role 'tool'"), Error);
}

TEST_CASE("chat template: the tiny model's template, token for token") {
  // The fixture model carries the DeepSeek-V3 template; its rendering must
  // tokenize exactly as the hand-written expected text does.
  auto model = Deepseek2Model::load(test::local_fixture("tiny-dsv3.Q4_K_M.gguf"));
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  const auto source = model->file().get_string_opt("tokenizer.chat_template");
  REQUIRE(source.has_value());
  CHECK(*source == jinja("deepseek-v3.jinja"));
  const ChatTemplate t = ChatTemplate::for_source(*source, tok.token_to_piece(tok.bos(), true),
                                                  tok.token_to_piece(tok.eos(), true));
  CHECK(t.family() == ChatFamily::deepseek3);
  const std::string expected =
      "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜>";
  const auto got = tok.encode(t.render(kTwoTurns, true), false, true);
  CHECK(got == tok.encode(expected, false, true));
  // The markers are single special tokens, BOS first.
  REQUIRE(!got.empty());
  CHECK(got[0] == tok.bos());
  CHECK(got.size() < expected.size() / 4);
}

// As llama.cpp's llm_chat_apply_template renders them (LLM_CHAT_TEMPLATE_KIMI_K2, _CHATGLM_4).
TEST_CASE("chat template: Kimi K2 and GLM-4") {
  const ChatTemplate kimi(ChatFamily::kimi_k2, "", "");
  CHECK(kimi.render(kTwoTurns, true) ==
        "<|im_system|>system<|im_middle|>You are terse.<|im_end|><|im_user|>user<|im_middle|>Hi<|im_end|>"
        "<|im_assistant|>assistant<|im_middle|>Hello!<|im_end|><|im_user|>user<|im_middle|>2+2?<|im_end|>"
        "<|im_assistant|>assistant<|im_middle|>");
  const ChatTemplate glm(ChatFamily::glm4, "", "");
  CHECK(glm.render(kTwoTurns, true) ==
        "[gMASK]<sop><|system|>\nYou are terse.<|user|>\nHi<|assistant|>\nHello!<|user|>\n2+2?<|assistant|>\n");
  CHECK(glm.render(kOneUser, false) == "[gMASK]<sop><|user|>\nHi");
}
