// Log-mel frames -> linear magnitudes for Griffin-Lim (narrate/codec/mel.py, MelSpec.magnitudes;
// its torch operations with sparse filterbank products are the fallback, reference_magnitudes
// the reference): the pseudo-inverse, then multiplicative non-negative least-squares updates,
// using that each mel band covers one run of frequency bins. Layout [F, T]: rows of T frames.
#include <ATen/ATen.h>
#include <torch/library.h>
#include <algorithm>
#include <cmath>
#include <vector>

// logmel [T, M]; fb [M, F] the filterbank; fb_pinv [F, M]. Returns [F, T].
at::Tensor mel_magnitudes(at::Tensor logmel, at::Tensor fb, at::Tensor fb_pinv, int64_t iters) {
  TORCH_CHECK(logmel.scalar_type() == at::kFloat && fb.scalar_type() == at::kFloat && fb_pinv.scalar_type() == at::kFloat);
  const int64_t T = logmel.size(0), M = fb.size(0), F = fb.size(1);
  TORCH_CHECK(logmel.dim() == 2 && logmel.size(1) == M && fb_pinv.size(0) == F && fb_pinv.size(1) == M);
  const at::Tensor fbc = fb.contiguous();
  const at::Tensor mel = logmel.exp().t().contiguous();  // [M, T]
  at::Tensor mag = at::mm(fb_pinv, mel).clamp_min_(1e-8f).contiguous();  // [F, T]
  const float* w = fbc.data_ptr<float>();
  const float* ml = mel.data_ptr<float>();
  float* mg = mag.data_ptr<float>();
  std::vector<int64_t> lo(M), hi(M);  // band m's bins: [lo, hi)
  for (int64_t m = 0; m < M; m++) {
    const float* row = w + m * F;
    int64_t a = 0, b = F;
    while (a < F && row[a] == 0.f) a++;
    while (b > a && row[b - 1] == 0.f) b--;
    lo[m] = a, hi[m] = b;
  }
  std::vector<float> target(F * T, 0.f), y(M * T), z(F * T);
  for (int64_t m = 0; m < M; m++)  // fb.T @ mel
    for (int64_t f = lo[m]; f < hi[m]; f++) {
      const float c = w[m * F + f];
      for (int64_t t = 0; t < T; t++) target[f * T + t] += c * ml[m * T + t];
    }
  for (int64_t it = 0; it < iters; it++) {
    std::fill(y.begin(), y.end(), 0.f);
    std::fill(z.begin(), z.end(), 0.f);
    for (int64_t m = 0; m < M; m++)  // y = fb @ mag
      for (int64_t f = lo[m]; f < hi[m]; f++) {
        const float c = w[m * F + f];
        for (int64_t t = 0; t < T; t++) y[m * T + t] += c * mg[f * T + t];
      }
    for (int64_t m = 0; m < M; m++)  // z = fb.T @ y
      for (int64_t f = lo[m]; f < hi[m]; f++) {
        const float c = w[m * F + f];
        for (int64_t t = 0; t < T; t++) z[f * T + t] += c * y[m * T + t];
      }
    for (int64_t e = 0; e < F * T; e++) mg[e] = mg[e] * target[e] / std::max(z[e], 1e-8f);
  }
  return mag;
}

TORCH_LIBRARY_FRAGMENT(narrate, m) {
  m.def("mel_magnitudes(Tensor logmel, Tensor fb, Tensor fb_pinv, int iters) -> Tensor");
}
TORCH_LIBRARY_IMPL(narrate, CPU, m) {
  m.impl("mel_magnitudes", &mel_magnitudes);
}
