// y = (x @ w.T) * scale + bias, int8 weights in panels [ceil(N / 16), K, 16], for the few rows
// of a decoder step (narrate/engine/int8_kernel.py builds and loads it; PackedLinear uses it).
// torch's _weight_int8pack_mm on an AVX2 CPU took 1.5-4x longer at one row.
#include <torch/extension.h>
#include <immintrin.h>
#include <cmath>

namespace {

// One block: rows [m0, m0 + R) x outputs [n, n + 8 * V). Every output's sum runs over k in order
// with fused multiply-adds, whatever the block shape: a row's result does not depend on M.
template <int R, int V>
inline void block(const float* x, int64_t K, const int8_t* wt, int64_t N, int64_t n,
                  const float* scale, const float* bias, float* y) {
  __m256 acc[R][V];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) acc[r][v] = _mm256_setzero_ps();
  const int8_t* wc[V];  // each 8 outputs' column: contiguous 16-byte rows of their panel
  for (int v = 0; v < V; v++) wc[v] = wt + ((n + 8 * v) / 16) * K * 16 + (n + 8 * v) % 16;
  for (int64_t k = 0; k < K; k++) {
    __m256 w[V];
    for (int v = 0; v < V; v++)
      w[v] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(wc[v] + k * 16))));
    for (int r = 0; r < R; r++) {
      __m256 xv = _mm256_broadcast_ss(x + r * K + k);
      for (int v = 0; v < V; v++) acc[r][v] = _mm256_fmadd_ps(xv, w[v], acc[r][v]);
    }
  }
  for (int v = 0; v < V; v++) {
    __m256 s = _mm256_loadu_ps(scale + n + 8 * v);
    __m256 b = bias ? _mm256_loadu_ps(bias + n + 8 * v) : _mm256_setzero_ps();
    for (int r = 0; r < R; r++) _mm256_storeu_ps(y + r * N + n + 8 * v, _mm256_fmadd_ps(acc[r][v], s, b));
  }
}

template <int R>
void rows(const float* x, int64_t K, const int8_t* wt, int64_t N, const float* scale, const float* bias, float* y) {
  constexpr int V = R == 1 ? 8 : (R == 2 ? 5 : 3);  // 8-12 accumulators
  int64_t n = 0;
  for (; n + 8 * V <= N; n += 8 * V) block<R, V>(x, K, wt, N, n, scale, bias, y);
  for (; n + 8 <= N; n += 8) block<R, 1>(x, K, wt, N, n, scale, bias, y);
  for (; n < N; n++)  // the same sums, one output at a time
    for (int r = 0; r < R; r++) {
      float a = 0.f;
      for (int64_t k = 0; k < K; k++) a = std::fma(x[r * K + k], (float)wt[(n / 16) * K * 16 + k * 16 + n % 16], a);
      y[r * N + n] = std::fma(a, scale[n], bias ? bias[n] : 0.f);
    }
}

}  // namespace

torch::Tensor int8_linear(torch::Tensor x, torch::Tensor wt, torch::Tensor scale, std::optional<torch::Tensor> bias) {
  TORCH_CHECK(x.dtype() == torch::kFloat && wt.dtype() == torch::kChar && scale.dtype() == torch::kFloat);
  x = x.contiguous();
  const int64_t M = x.size(0), K = x.size(1), N = scale.numel();
  TORCH_CHECK(wt.dim() == 3 && wt.size(0) == (N + 15) / 16 && wt.size(1) == K && wt.size(2) == 16 && wt.is_contiguous());
  auto y = torch::empty({M, N}, x.options());
  const float* b = bias.has_value() ? bias->data_ptr<float>() : nullptr;
  const float* xp = x.data_ptr<float>(); const int8_t* wp = wt.data_ptr<int8_t>();
  const float* sp = scale.data_ptr<float>(); float* yp = y.data_ptr<float>();
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) rows<4>(xp + m * K, K, wp, N, sp, b, yp + m * N);
  for (; m + 2 <= M; m += 2) rows<2>(xp + m * K, K, wp, N, sp, b, yp + m * N);
  for (; m < M; m++) rows<1>(xp + m * K, K, wp, N, sp, b, yp + m * N);
  return y;
}

TORCH_LIBRARY(narrate, m) {
  m.def("int8_linear(Tensor x, Tensor wt, Tensor scale, Tensor? bias) -> Tensor");
}
TORCH_LIBRARY_IMPL(narrate, CPU, m) {
  m.impl("int8_linear", &int8_linear);
}
