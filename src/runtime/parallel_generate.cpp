#include "runtime/parallel_generate.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>

#include "core/error.h"

namespace moe {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// One sequence of the session and the request it is answering.
struct Slot {
  size_t request = 0;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<Generation> gen;
  size_t prompt_done = 0;   // prompt tokens evaluated
  std::vector<int32_t> section;  // the request's shared prefix (ParallelRequest::shared_prefix)
  std::vector<int32_t> held;     // a complete shared section the cache holds (it outlives its request)
  int32_t next = -1;        // generating: the token to evaluate next
  Clock::time_point t_start, t_gen;
  bool busy() const { return gen != nullptr; }
};

}  // namespace

std::vector<size_t> shared_prefixes(const std::vector<const std::vector<int32_t>*>& prompts) {
  // Sorted, a prompt's longest common prefix with any other is the longer
  // of those with its two neighbours.
  std::vector<size_t> order(prompts.size()), out(prompts.size(), 0);
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return *prompts[a] < *prompts[b]; });
  auto lcp = [&](size_t a, size_t b) {
    const auto &x = *prompts[a], &y = *prompts[b];
    return static_cast<size_t>(std::mismatch(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(std::min(x.size(), y.size())),
                                              y.begin()).first - x.begin());
  };
  for (size_t k = 0; k + 1 < order.size(); ++k) {
    const size_t l = lcp(order[k], order[k + 1]);
    out[order[k]] = std::max(out[order[k]], l);
    out[order[k + 1]] = std::max(out[order[k + 1]], l);
  }
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = std::min(out[i], prompts[i]->empty() ? 0 : prompts[i]->size() - 1);
  return out;
}

size_t generate_parallel(InferenceSession& session, const Tokenizer& tok, const std::vector<ParallelRequest>& requests,
                         const std::function<void(size_t, GenerateResult&, uint64_t)>& on_done,
                         const std::function<bool()>& cancelled) {
  const int64_t n_vocab = session.n_vocab();
  const int64_t budget = session.max_step_tokens();
  std::vector<Slot> slots(static_cast<size_t>(session.n_seq()));
  std::vector<int32_t> tokens;
  std::vector<SeqSpan> spans;
  std::vector<Slot*> span_slot;  // the slot of each span
  std::vector<float> logits;
  std::vector<DraftAsk> asks;    // each decoding sequence's drafts
  std::vector<int32_t> drafts;   // their room
  size_t next_request = 0;
  bool stopping = false;

  auto finish = [&](Slot& s) {
    GenerateResult& r = s.gen->finish();
    r.gen_s = seconds_between(s.t_gen, Clock::now());
    on_done(s.request, r, s.sampler->seed());
    s.gen.reset();
    s.sampler.reset();
  };

  for (;;) {
    if (!stopping && cancelled()) {
      stopping = true;
      for (Slot& s : slots) {
        if (!s.busy()) continue;
        s.gen->interrupt();
        if (s.prompt_done < requests[s.request].prompt.size())
          s.gen->result().prompt_s = seconds_between(s.t_start, Clock::now());
        s.t_gen = Clock::now();
        finish(s);
      }
    }
    // Free slots take the next requests.
    for (size_t i = 0; i < slots.size() && !stopping && next_request < requests.size(); ++i) {
      Slot& s = slots[i];
      if (s.busy()) continue;
      const ParallelRequest& q = requests[next_request];
      MOE_ASSERT(!q.prompt.empty() && static_cast<int64_t>(q.prompt.size()) <= session.n_ctx(),
                 "request %zu: a prompt of %zu tokens in a context of %lld", next_request, q.prompt.size(),
                 static_cast<long long>(session.n_ctx()));
      s.request = next_request++;
      s.sampler = std::make_unique<Sampler>(q.sampling, static_cast<int32_t>(n_vocab));
      s.gen = std::make_unique<Generation>(tok, *s.sampler, q.prompt, q.options, n_vocab, [](std::string_view) {});
      s.prompt_done = 0;
      s.next = -1;
      s.t_start = Clock::now();
      // The slot's cache stays as it is while it holds this request's
      // shared section (the prompt step below takes it from there).
      s.section.assign(q.prompt.begin(), q.prompt.begin() + static_cast<std::ptrdiff_t>(q.shared_prefix));
      if (s.section.empty() || s.held != s.section) {
        session.seq_truncate(static_cast<int64_t>(i), 0);
        s.held.clear();
      }
    }

    // The step: one token of every generating sequence in one forward
    // pass, then the next prompt chunk of each sequence reading its prompt,
    // each in a forward pass of its own, cut as generate() cuts it alone:
    // its rows then take the same kernels as alone (a chunk's rows in the
    // repacked GEMM, a decoding token's on the per-row kernels), so answers
    // are the same at any -np. A long prompt advances one chunk per step
    // and never stalls the others' decoding.
    tokens.clear();
    spans.clear();
    span_slot.clear();
    // With the MTP module each sequence drafts (all in one pass of the
    // module) and verifies [next, drafts] in the shared step, as generate()
    // does alone: the drafts stop at the token budget and at the step's
    // room (one token is kept for each sequence still to come).
    asks.clear();
    std::vector<Slot*> ask_slot;
    for (size_t i = 0; i < slots.size(); ++i)
      if (slots[i].busy() && slots[i].next >= 0) ask_slot.push_back(&slots[i]);
    const size_t stride = static_cast<size_t>(std::max<int64_t>(1, budget));  // drafts of one sequence at most
    drafts.resize(ask_slot.size() * stride);
    int64_t room = budget - static_cast<int64_t>(ask_slot.size());
    for (size_t k = 0; k < ask_slot.size(); ++k) {
      const Slot& s = *ask_slot[k];
      const GenerateOptions& go = requests[s.request].options;
      const int64_t n_spec = session.has_mtp() ? std::max<int64_t>(0, go.spec_draft_n) : 0;
      const int64_t gen_left = go.n_predict >= 0 ? go.n_predict - s.gen->result().n_generated - 1 : n_spec;
      const int64_t want = std::max<int64_t>(0, std::min({n_spec, gen_left, room}));
      room -= want;
      const int32_t seq = static_cast<int32_t>(&s - slots.data());
      asks.push_back({seq, s.next, want, drafts.data() + k * stride, 0});
    }
    if (session.has_mtp()) session.mtp_draft_many(asks);
    for (size_t k = 0; k < ask_slot.size(); ++k) {
      const DraftAsk& a = asks[k];
      tokens.push_back(a.next);
      tokens.insert(tokens.end(), a.drafts, a.drafts + a.n_out);
      spans.push_back({static_cast<int32_t>(a.seq), 1 + a.n_out, true, a.n_out > 0});
      span_slot.push_back(ask_slot[k]);
    }
    bool any = !spans.empty();
    if (any) {
      logits.resize(tokens.size() * static_cast<size_t>(n_vocab));
      session.forward_spans(tokens.data(), spans, logits.data());
      size_t row = 0;  // each span's first row of logits and first token
      for (size_t k = 0; k < spans.size(); ++k) {
        Slot& s = *span_slot[k];
        const SeqSpan& sp = spans[k];
        const int64_t n_draft = sp.n - 1, p = session.seq_pos(sp.seq) - sp.n;
        const int32_t* drafts = tokens.data() + row + 1;
        GenerateResult& r = s.gen->result();
        int64_t j = 0;
        for (;; ++j) {  // the agreeing drafts stay (generate() explains the step)
          const int32_t draft = j < n_draft ? drafts[j] : -1;
          s.next = s.gen->next(logits.data() + (row + static_cast<size_t>(j)) * static_cast<size_t>(n_vocab), p + 1 + j,
                               session.n_ctx(), draft);
          if (s.next < 0 || j == n_draft || s.next != draft) break;
          ++r.n_accepted;
        }
        if (n_draft > 0) {
          r.n_drafted += n_draft;
          ++r.n_verify_steps;
          session.seq_truncate(sp.seq, p + 1 + j);
        }
        row += static_cast<size_t>(sp.n);
        if (s.next < 0) finish(s);
      }
    }
    for (size_t i = 0; i < slots.size(); ++i) {
      Slot& s = slots[i];
      if (!s.busy() || s.next >= 0) continue;
      any = true;
      const ParallelRequest& q = requests[s.request];
      if (s.prompt_done == 0 && !s.section.empty()) {
        // Its shared section: kept from its own slot's last request or
        // copied from a slot that holds it, else awaited from a slot
        // evaluating it (the first such slot evaluates), else evaluated here.
        std::optional<size_t> holder;
        bool await = false;
        for (size_t k = 0; k < slots.size(); ++k) {
          const size_t j = (i + k) % slots.size();  // this slot first
          const Slot& o = slots[j];
          if (o.held == s.section) {
            if (!holder) holder = j;
          } else if (j != i && o.busy() && o.next < 0 && o.section == s.section && (o.prompt_done > 0 || j < i)) {
            await = true;
          }
        }
        if (holder) {
          session.seq_copy(static_cast<int64_t>(*holder), static_cast<int64_t>(i), static_cast<int64_t>(s.section.size()));
          s.prompt_done = s.section.size();
          s.held = s.section;
          s.gen->result().n_prompt = s.gen->result().n_prompt_copied = static_cast<int64_t>(s.prompt_done);
        } else if (await) {
          continue;
        }
      }
      // Up to the end of the shared section, then up to the end.
      const size_t end = s.prompt_done < q.shared_prefix ? q.shared_prefix : q.prompt.size();
      const int64_t left = static_cast<int64_t>(end - s.prompt_done);
      const int64_t n = std::min(std::min(std::max<int64_t>(1, q.options.prompt_chunk), budget), left);
      const SeqSpan span{static_cast<int32_t>(i), n, s.prompt_done + static_cast<size_t>(n) == q.prompt.size()};
      logits.resize(static_cast<size_t>(n_vocab));
      session.forward_spans(q.prompt.data() + s.prompt_done, {span}, logits.data());
      GenerateResult& r = s.gen->result();
      s.prompt_done += static_cast<size_t>(n);
      r.n_prompt += n;
      if (!s.section.empty() && s.prompt_done == s.section.size()) s.held = s.section;
      if (!span.logits) continue;
      r.prompt_complete = true;
      const auto now = Clock::now();
      r.prompt_s = seconds_between(s.t_start, now);
      s.t_gen = now;
      s.next = s.gen->next(logits.data(), session.seq_pos(i), session.n_ctx());
      if (s.next < 0) finish(s);
    }
    if (!any) break;  // nothing in flight, nothing left to start
  }
  return requests.size() - next_request;
}

}  // namespace moe
