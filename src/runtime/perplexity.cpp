#include "runtime/perplexity.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace moe {

namespace {

// The float32 pair at the start of a compact row (stored in 4 uint16 slots).
void put_row_header(uint16_t* row, float scale, float min_log_prob) {
  const float h[2] = {scale, min_log_prob};
  std::memcpy(row, h, sizeof(h));
}
void get_row_header(const uint16_t* row, float& scale, float& min_log_prob) {
  float h[2];
  std::memcpy(h, row, sizeof(h));
  scale = h[0];
  min_log_prob = h[1];
}

float max_of(const float* x, int64_t n) {
  float m = x[0];
  for (int64_t i = 1; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

// sum exp(x - max) in double, each exponential in float as llama.cpp.
double sum_exp(const float* x, int64_t n, float max) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(x[i] - max);
  return s;
}

}  // namespace

double token_nll(const float* logits, int64_t n_vocab, int32_t tok) {
  const float max = max_of(logits, n_vocab);
  const double s = sum_exp(logits, n_vocab, max);
  return -(static_cast<double>(logits[tok] - max) - std::log(s));
}

double NllSums::ppl() const { return std::exp(sum / static_cast<double>(count)); }

PplEstimate final_estimate(const NllSums& s) {
  PplEstimate e;
  if (s.count < 2) return e;
  const double mean = s.sum / static_cast<double>(s.count);
  const double var = s.sum2 / static_cast<double>(s.count) - mean * mean;
  e.ppl = std::exp(mean);
  if (var > 0) {
    e.uncertainty = std::sqrt(var / static_cast<double>(s.count - 1)) * e.ppl;
    e.ok = true;
  }
  return e;
}

double encode_log_probs(const float* logits, int64_t n_vocab, int32_t tok, uint16_t* row) {
  float max = logits[0], min = logits[0];
  for (int64_t i = 1; i < n_vocab; ++i) {
    max = std::max(max, logits[i]);
    min = std::min(min, logits[i]);
  }
  // Probabilities below e^-16 of the top one are stored as the floor: they
  // cannot matter to the KL divergence, and the range stays small enough for
  // 16 bits.
  min = std::max(min, max - 16);
  const double s = sum_exp(logits, n_vocab, max);
  const float log_sum_exp = static_cast<float>(std::log(s));
  const float min_log_prob = min - max - log_sum_exp;
  const float scale = (max - min) / 65535.f;
  put_row_header(row, scale, min_log_prob);
  uint16_t* q = row + 4;
  const int64_t n_codes = log_prob_row_u16(n_vocab) - 4;
  std::fill(q, q + n_codes, uint16_t{0});
  if (scale != 0.0f) {
    const float inv_scale = 1 / scale;
    for (int64_t i = 0; i < n_vocab; ++i)
      if (logits[i] > min) q[i] = static_cast<uint16_t>(std::lrint(inv_scale * (logits[i] - min)));
  }
  return -(static_cast<double>(logits[tok] - max) - std::log(s));
}

float decoded_log_prob(const uint16_t* row, int64_t i) {
  float scale, min_log_prob;
  get_row_header(row, scale, min_log_prob);
  return scale * row[4 + i] + min_log_prob;
}

KldToken add_kld_token(const float* logits, int64_t n_vocab, const uint16_t* base_row, int32_t tok, KldSums& s) {
  // The arithmetic types follow llama.cpp's (floats where it uses floats), so
  // that the sums agree with its to the last digits.
  float max = logits[0];
  int64_t imax = 0;
  for (int64_t i = 1; i < n_vocab; ++i) {
    if (logits[i] > max) {
      max = logits[i];
      imax = i;
    }
  }
  const float log_sum_exp = static_cast<float>(std::log(sum_exp(logits, n_vocab, max)));
  float scale, min_log_prob;
  get_row_header(base_row, scale, min_log_prob);
  const uint16_t* q = base_row + 4;

  const float nll = max + log_sum_exp - logits[tok];
  s.sum_nll += nll;
  s.sum_nll2 += nll * nll;
  const float nll_base = -(scale * q[tok] + min_log_prob);
  s.sum_nll_base += nll_base;
  s.sum_nll_base2 += nll_base * nll_base;
  s.sum_nll_nll_base += nll * nll_base;

  const float log_norm = max + log_sum_exp;  // log p_Q(i) = logits[i] - log_norm
  double kld = 0.0;
  int64_t imax_base = 0;
  float max_base = 0.0f;
  for (int64_t i = 0; i < n_vocab; ++i) {
    const float log_p_base = scale * q[i] + min_log_prob;
    if (i == 0 || log_p_base > max_base) {
      max_base = log_p_base;
      imax_base = i;
    }
    if (log_p_base > -16.f) {
      const float p_base = std::exp(log_p_base);
      kld += p_base * (log_p_base - logits[i] + log_norm);
    }
  }
  s.sum_kld += kld;
  s.sum_kld2 += kld * kld;
  ++s.count;
  if (imax == imax_base) ++s.n_same_top;

  const float p_diff = std::exp(-nll) - std::exp(-nll_base);
  s.sum_p_diff += p_diff;
  const double p_diff2 = p_diff * p_diff;
  s.sum_p_diff2 += p_diff2;
  s.sum_p_diff4 += p_diff2 * p_diff2;
  s.max_p_diff = std::max(s.max_p_diff, std::fabs(p_diff));
  return {kld, p_diff};
}

MeanUnc mean_and_uncertainty(double sum, double sum2, int64_t count) {
  if (count < 1) return {};
  const double n = static_cast<double>(count);
  const double mean = sum / n;
  const double var = sum2 / n - mean * mean;
  return {mean, var > 0 && count > 10 ? std::sqrt(var / (n - 1)) : 0.0};
}

double mean_covariance(double sum_a, double sum_b, double sum_ab, int64_t count) {
  if (count < 10) return 0.0;
  const double n = static_cast<double>(count);
  return (sum_ab / n - (sum_a / n) * (sum_b / n)) / (n - 1);
}

KldSummary summarize(const KldSums& s) {
  KldSummary r;
  const MeanUnc log_ppl = mean_and_uncertainty(s.sum_nll, s.sum_nll2, s.count);
  const MeanUnc log_ppl_base = mean_and_uncertainty(s.sum_nll_base, s.sum_nll_base2, s.count);
  // d exp(x) = exp(x) dx: the uncertainties carry over multiplied by the value.
  r.ppl.mean = std::exp(log_ppl.mean);
  r.ppl.unc = r.ppl.mean * log_ppl.unc;
  r.ppl_base.mean = std::exp(log_ppl_base.mean);
  r.ppl_base.unc = r.ppl_base.mean * log_ppl_base.unc;
  const double cov = mean_covariance(s.sum_nll, s.sum_nll_base, s.sum_nll_nll_base, s.count);
  r.log_ppl_cor = cov / (log_ppl.unc * log_ppl_base.unc);
  r.log_ppl_ratio.mean = log_ppl.mean - log_ppl_base.mean;
  r.log_ppl_ratio.unc = std::sqrt(log_ppl.unc * log_ppl.unc + log_ppl_base.unc * log_ppl_base.unc - 2.0 * cov);
  r.ppl_ratio.mean = std::exp(r.log_ppl_ratio.mean);
  r.ppl_ratio.unc = r.ppl_ratio.mean * r.log_ppl_ratio.unc;
  const double ppl_cov = r.ppl.mean * r.ppl_base.mean * cov;
  r.ppl_diff.mean = r.ppl.mean - r.ppl_base.mean;
  r.ppl_diff.unc = std::sqrt(r.ppl.unc * r.ppl.unc + r.ppl_base.unc * r.ppl_base.unc - 2.0 * ppl_cov);
  r.kld = mean_and_uncertainty(s.sum_kld, s.sum_kld2, s.count);
  r.p_diff = mean_and_uncertainty(s.sum_p_diff, s.sum_p_diff2, s.count);
  const MeanUnc mse = mean_and_uncertainty(s.sum_p_diff2, s.sum_p_diff4, s.count);
  r.p_diff_rms.mean = std::sqrt(mse.mean);
  r.p_diff_rms.unc = 0.5 / r.p_diff_rms.mean * mse.unc;
  const double n = static_cast<double>(s.count);
  r.same_top.mean = s.count > 0 ? static_cast<double>(s.n_same_top) / n : 0.0;
  r.same_top.unc = s.count > 1 ? std::sqrt(r.same_top.mean * (1 - r.same_top.mean) / (n - 1)) : 0.0;
  return r;
}

float percentile(const std::vector<float>& sorted, float fraction) {
  if (sorted.empty()) return 0.0f;
  if (fraction <= 0) return sorted.front();
  if (fraction >= 1) return sorted.back();
  float p = fraction * static_cast<float>(sorted.size() - 1);
  const size_t ip = static_cast<size_t>(p);
  p -= static_cast<float>(ip);
  return (1 - p) * sorted[ip] + p * sorted[std::min(ip + 1, sorted.size() - 1)];
}

float median(const std::vector<float>& sorted) {
  const size_t n = sorted.size();
  if (n == 0) return 0.0f;
  return n % 2 == 0 ? 0.5f * (sorted[n / 2] + sorted[n / 2 - 1]) : sorted[n / 2];
}

}  // namespace moe
