// y = (x @ w.T) * scale + bias with int8 weights, for the few rows of a decoder step
// (narrate/kernels builds and loads it; PackedLinear uses it).
//
// Each row of x is quantized on its own to int16 (x ~= xq * amax / Q, Q chosen so no int32 sum
// can overflow: Q * 127 * K < 2^31), and the products run as int16 x int16 -> int32 pairs
// (vpmaddwd: 16 multiply-adds an instruction, the weights widened from int8 on load). Integer
// sums are exact, so a row's result depends on nothing but that row: not on the batch, not on
// the order of the sum. The added error is below amax / (2Q) per activation (Q >= 16k for
// K <= 1024), far under the int8 weights' own. Against the earlier kernel with fp32 activations
// (8 outputs per fused multiply-add) on this AMD EPYC, one row / four: in_proj 30/84 -> 17/31 us,
// the 4608-row head 90/348 -> 51/150 us.
//
// Weights in panels [ceil(N / 8), K / 2, 8, 2]: each 8 outputs' weights one contiguous panel,
// read front to back, k in pairs (kernels.panels makes it).
#include <ATen/ATen.h>
#include <torch/library.h>
#include <immintrin.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

// The row x [K] -> xq [K] int16 and its scale amax / Q (K a multiple of 16). Conversion rounds
// to nearest even (the default rounding mode), as std::nearbyint would.
float quantize_row(const float* x, int64_t K, float Q, int16_t* xq) {
  const __m256 sign = _mm256_set1_ps(-0.f);
  __m256 m = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; k += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
  float lanes[8];
  _mm256_storeu_ps(lanes, m);
  const float amax = *std::max_element(lanes, lanes + 8);
  const __m256 inv = _mm256_set1_ps(amax > 0.f ? Q / amax : 0.f);
  for (int64_t k = 0; k < K; k += 16) {
    const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k), inv));
    const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8), inv));
    // packs works within 128-bit lanes: [a0-3 b0-3 a4-7 b4-7] -> reorder the 64-bit quarters
    _mm256_storeu_si256((__m256i*)(xq + k), _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8));
  }
  return amax / Q;
}

// One block: rows [0, R) x outputs [n, n + 8 * V).
template <int R, int V>
inline void block(const int16_t* xq, const float* rs, int64_t K, const int8_t* wt, int64_t N, int64_t n,
                  const float* scale, const float* bias, float* y) {
  __m256i acc[R][V];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) acc[r][v] = _mm256_setzero_si256();
  const int8_t* wc[V];
  for (int v = 0; v < V; v++) wc[v] = wt + (n / 8 + v) * K * 8;
  for (int64_t k = 0; k < K / 2; k++) {
    __m256i w[V];
    for (int v = 0; v < V; v++) w[v] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(wc[v] + k * 16)));
    for (int r = 0; r < R; r++) {
      int32_t pair;
      std::memcpy(&pair, xq + r * K + 2 * k, sizeof pair);
      const __m256i xv = _mm256_set1_epi32(pair);
      for (int v = 0; v < V; v++) acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(xv, w[v]));
    }
  }
  for (int v = 0; v < V; v++) {
    const int64_t o = n + 8 * v;
    float sv[8], bv[8];
    for (int i = 0; i < 8; i++) {
      sv[i] = o + i < N ? scale[o + i] : 0.f;
      bv[i] = bias && o + i < N ? bias[o + i] : 0.f;
    }
    const __m256 s = _mm256_loadu_ps(sv), b = _mm256_loadu_ps(bv);
    for (int r = 0; r < R; r++) {
      const __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][v]), _mm256_set1_ps(rs[r]));
      float out[8];
      _mm256_storeu_ps(out, _mm256_fmadd_ps(t, s, b));
      std::copy(out, out + std::min<int64_t>(8, N - o), y + r * N + o);
    }
  }
}

template <int R>
void rows(const int16_t* xq, const float* rs, int64_t K, const int8_t* wt, int64_t N, const float* scale,
          const float* bias, float* y) {
  constexpr int V = R == 1 ? 8 : (R == 2 ? 6 : 3);  // accumulators + weights within 16 registers
  const int64_t P = (N + 7) / 8;
  int64_t p = 0;
  for (; p + V <= P; p += V) block<R, V>(xq, rs, K, wt, N, p * 8, scale, bias, y);
  for (; p < P; p++) block<R, 1>(xq, rs, K, wt, N, p * 8, scale, bias, y);
}

}  // namespace

at::Tensor int8_linear(at::Tensor x, at::Tensor wt, at::Tensor scale, std::optional<at::Tensor> bias) {
  TORCH_CHECK(x.dtype() == at::kFloat && wt.dtype() == at::kChar && scale.dtype() == at::kFloat && x.dim() == 2 &&
              scale.is_contiguous());
  x = x.contiguous();
  const int64_t M = x.size(0), K = x.size(1), N = scale.numel();
  TORCH_CHECK(K % 16 == 0, "int8_linear: the inner size must be a multiple of 16");
  TORCH_CHECK(wt.dim() == 4 && wt.size(0) == (N + 7) / 8 && wt.size(1) == K / 2 && wt.size(2) == 8 &&
              wt.size(3) == 2 && wt.is_contiguous(), "int8_linear: weights in panels [ceil(N / 8), K / 2, 8, 2]");
  auto y = at::empty({M, N}, x.options());
  const float Q = (float)std::min(32767.0, std::floor(2147483647.0 / (127.0 * (double)K)));
  std::vector<int16_t> xq(M * K);
  std::vector<float> rs(M);
  const float* xp = x.data_ptr<float>();
  for (int64_t m = 0; m < M; m++) rs[m] = quantize_row(xp + m * K, K, Q, xq.data() + m * K);
  TORCH_CHECK(!bias.has_value() || (bias->is_contiguous() && bias->numel() == N), "int8_linear: bias [N]");
  const float* b = bias.has_value() ? bias->data_ptr<float>() : nullptr;
  const int8_t* wp = wt.data_ptr<int8_t>();
  const float* sp = scale.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) rows<4>(xq.data() + m * K, rs.data() + m, K, wp, N, sp, b, yp + m * N);
  for (; m + 2 <= M; m += 2) rows<2>(xq.data() + m * K, rs.data() + m, K, wp, N, sp, b, yp + m * N);
  for (; m < M; m++) rows<1>(xq.data() + m * K, rs.data() + m, K, wp, N, sp, b, yp + m * N);
  return y;
}

TORCH_LIBRARY(narrate, m) {
  m.def("int8_linear(Tensor x, Tensor wt, Tensor scale, Tensor? bias) -> Tensor");
}
TORCH_LIBRARY_IMPL(narrate, CPU, m) {
  m.impl("int8_linear", &int8_linear);
}
