// Perplexity and KL-divergence statistics, computed as llama.cpp's
// llama-perplexity computes them, so that the numbers of the two tools can be
// compared digit for digit.
//
// Perplexity: each chunk of n_ctx tokens is evaluated from an empty cache and
// only its second half is scored (position j, j >= n_ctx/2, predicts token
// j+1), so every scored token has at least n_ctx/2 tokens of context. The
// per-token negative log-likelihoods are summed; PPL = exp(mean) and its
// uncertainty is exp(mean) * sqrt(var / (count - 1)) (first-order error
// propagation of the standard error of the mean).
//
// KL divergence compares a model Q with a base model whose log-probabilities
// were saved in llama.cpp's compact form (kld_base_file.h): per scored token
// one row of uint16 codes, 2 floats (scale, min log-prob) up front.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace moe {

// -log softmax(logits)[tok]; the exponentials are summed in double after
// subtracting the maximum, as llama.cpp does.
double token_nll(const float* logits, int64_t n_vocab, int32_t tok);

// Running sums of per-token negative log-likelihoods.
struct NllSums {
  double sum = 0.0;
  double sum2 = 0.0;
  int64_t count = 0;
  void add(double nll) {
    sum += nll;
    sum2 += nll * nll;
    ++count;
  }
  double ppl() const;  // exp(sum / count)
};

// "Final estimate: PPL = X +/- Y": ok is false when the variance is not
// positive (llama.cpp then prints an error instead of the estimate).
struct PplEstimate {
  double ppl = 0.0;
  double uncertainty = 0.0;
  bool ok = false;
};
PplEstimate final_estimate(const NllSums& s);

// ---- compact base log-probabilities (llama.cpp's --kl-divergence-base) ----

// uint16 values per scored token: n_vocab rounded up to even, plus 4 for the
// two float32 header values (scale, min log-prob).
inline int64_t log_prob_row_u16(int64_t n_vocab) { return 2 * ((n_vocab + 1) / 2) + 4; }

// Writes the row of log_prob_row_u16(n_vocab) values for one token's logits:
// log-probs are kept down to max - 16 and quantized to 16 bits on
// [min, max]. Returns -log p(tok) computed like token_nll().
double encode_log_probs(const float* logits, int64_t n_vocab, int32_t tok, uint16_t* row);

// The log-prob of token i stored in a row (what the reader of the file sees).
float decoded_log_prob(const uint16_t* row, int64_t i);

// ---- KL divergence ----------------------------------------------------------

// The sums llama.cpp keeps over every scored token.
struct KldSums {
  double sum_nll = 0.0, sum_nll2 = 0.0;            // of Q
  double sum_nll_base = 0.0, sum_nll_base2 = 0.0;  // of the base
  double sum_nll_nll_base = 0.0;
  double sum_kld = 0.0, sum_kld2 = 0.0;
  double sum_p_diff = 0.0, sum_p_diff2 = 0.0, sum_p_diff4 = 0.0;
  float max_p_diff = 0.0f;
  int64_t n_same_top = 0;  // argmax of Q == argmax of the base
  int64_t count = 0;
};

// One token: KL(base || Q) and p_Q(tok) - p_base(tok); adds to `s`.
struct KldToken {
  double kld = 0.0;
  float p_diff = 0.0f;
};
KldToken add_kld_token(const float* logits, int64_t n_vocab, const uint16_t* base_row, int32_t tok, KldSums& s);

// Mean and the standard error of the mean (0 for 10 values or fewer, as
// llama.cpp).
struct MeanUnc {
  double mean = 0.0;
  double unc = 0.0;
};
MeanUnc mean_and_uncertainty(double sum, double sum2, int64_t count);
// Covariance of the two means (0 for fewer than 10 values).
double mean_covariance(double sum_a, double sum_b, double sum_ab, int64_t count);

// Everything llama.cpp prints from the sums, value and uncertainty each.
struct KldSummary {
  MeanUnc ppl, ppl_base;      // PPL(Q), PPL(base)
  double log_ppl_cor = 0.0;   // correlation of ln PPL(Q) and ln PPL(base)
  MeanUnc log_ppl_ratio;      // ln(PPL(Q)/PPL(base))
  MeanUnc ppl_ratio;          // PPL(Q)/PPL(base)
  MeanUnc ppl_diff;           // PPL(Q)-PPL(base)
  MeanUnc kld;                // mean KL divergence
  MeanUnc p_diff;             // mean Δp
  MeanUnc p_diff_rms;         // RMS Δp
  MeanUnc same_top;           // fraction with the same argmax
};
KldSummary summarize(const KldSums& s);

// Linear interpolation between sorted values, llama.cpp's percentile.
float percentile(const std::vector<float>& sorted, float fraction);
float median(const std::vector<float>& sorted);

}  // namespace moe
