// One Mamba decoder step's elementwise work in two passes instead of ~20 tensor operations
// (narrate/kernels builds and loads it; packed.SteppingMamba uses it, its torch
// operations are the reference). Layouts are SteppingMamba's: conv state [B, d_conv - 1, d_inner],
// SSM state [B, d_state, d_inner]; every loop runs along d_inner, 8 channels to an AVX2 vector.
// Each (stream, channel) is computed on its own, in one order: a stream's result does not depend
// on its batch.
#include <ATen/ATen.h>
#include <torch/library.h>
#include <immintrin.h>

namespace {

// 2^x for x in [-126, 127] (clamped there): x = i + f with |f| <= 1/2, 2^f from Cephes' exp2f
// polynomial (relative error ~2e-7), 2^i built in the exponent bits.
inline __m256 exp2_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-126.f)), _mm256_set1_ps(127.f));
  const __m256 i = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(x, i);
  __m256 p = _mm256_set1_ps(1.535336188319500e-4f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.339887440266574e-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618437357674640e-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550332471162809e-2f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402264791363012e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931472028550421e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(i), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// x * sigmoid(x) = x / (1 + 2^(-x log2 e))
inline __m256 silu_ps(__m256 x) {
  const __m256 e = exp2_ps(_mm256_mul_ps(x, _mm256_set1_ps(-1.4426950408889634f)));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.f), e));
}

void check_rows(const at::Tensor& t, int64_t B, int64_t width, const char* name) {
  TORCH_CHECK(t.dtype() == at::kFloat && t.dim() == 2 && t.size(0) == B && t.size(1) >= width && t.stride(1) == 1,
              name, ": float rows [B, >= ", width, "] with unit column stride expected");
}

}  // namespace

// The causal convolution's step: window = [conv state, x], xc = silu(sum_j window[j] * w[j] + b);
// the state shifts by one (x enters it, written in place). x is xz's first d_inner columns.
at::Tensor conv_step(at::Tensor xz, at::Tensor conv, at::Tensor w, at::Tensor b) {
  const int64_t B = conv.size(0), H = conv.size(1), D = conv.size(2);
  TORCH_CHECK(conv.dim() == 3 && conv.is_contiguous() && conv.dtype() == at::kFloat && D % 8 == 0,
              "conv state [B, d_conv - 1, d_inner]");
  TORCH_CHECK(w.is_contiguous() && w.size(0) == H + 1 && w.size(1) == D && b.is_contiguous() && b.numel() == D);
  check_rows(xz, B, D, "xz");
  auto xc = at::empty({B, D}, conv.options());
  const float* wp = w.data_ptr<float>(); const float* bp = b.data_ptr<float>();
  for (int64_t r = 0; r < B; r++) {
    const float* x = xz.data_ptr<float>() + r * xz.stride(0);
    float* s = conv.data_ptr<float>() + r * H * D;
    float* out = xc.data_ptr<float>() + r * D;
    for (int64_t d = 0; d < D; d += 8) {
      const __m256 xv = _mm256_loadu_ps(x + d);
      __m256 acc = _mm256_setzero_ps();
      for (int64_t j = 0; j < H; j++) {
        const __m256 sj = _mm256_loadu_ps(s + j * D + d);
        acc = _mm256_fmadd_ps(sj, _mm256_loadu_ps(wp + j * D + d), acc);
        if (j > 0) _mm256_storeu_ps(s + (j - 1) * D + d, sj);
      }
      acc = _mm256_fmadd_ps(xv, _mm256_loadu_ps(wp + H * D + d), acc);
      if (H > 0) _mm256_storeu_ps(s + (H - 1) * D + d, xv);
      _mm256_storeu_ps(out + d, silu_ps(_mm256_add_ps(acc, _mm256_loadu_ps(bp + d))));
    }
  }
  return xc;
}

// The selective scan's step and read-out, the state h [B, N, D] updated in place:
//   h[n] = 2^(dt * A2[n]) * h[n] + Bm[n] * dt * x,   y = (sum_n h[n] * Cm[n] + Dskip * x) * silu(z)
// dt [B, D] (after softplus), x [B, D] (the convolution's output), bc [B, >= 2N] (Bm then Cm),
// z [B, >= D] rows, A2 [N, D] (the decay, times log2 e), Dskip [D].
at::Tensor ssm_step(at::Tensor dt, at::Tensor x, at::Tensor bc, at::Tensor z, at::Tensor A2,
                       at::Tensor Dskip, at::Tensor h) {
  const int64_t B = h.size(0), N = h.size(1), D = h.size(2);
  TORCH_CHECK(h.is_contiguous() && h.dtype() == at::kFloat && D % 8 == 0, "ssm state [B, d_state, d_inner]");
  TORCH_CHECK(A2.is_contiguous() && A2.size(0) == N && A2.size(1) == D && Dskip.is_contiguous() && Dskip.numel() == D);
  check_rows(dt, B, D, "dt"); check_rows(x, B, D, "x"); check_rows(bc, B, 2 * N, "bc"); check_rows(z, B, D, "z");
  auto y = at::empty({B, D}, h.options());
  const float* ap = A2.data_ptr<float>(); const float* skip = Dskip.data_ptr<float>();
  for (int64_t r = 0; r < B; r++) {
    const float* dtr = dt.data_ptr<float>() + r * dt.stride(0);
    const float* xr = x.data_ptr<float>() + r * x.stride(0);
    const float* bm = bc.data_ptr<float>() + r * bc.stride(0);
    const float* cm = bm + N;
    const float* zr = z.data_ptr<float>() + r * z.stride(0);
    float* hr = h.data_ptr<float>() + r * N * D;
    float* out = y.data_ptr<float>() + r * D;
    for (int64_t d = 0; d < D; d += 8) {
      const __m256 dtv = _mm256_loadu_ps(dtr + d), xv = _mm256_loadu_ps(xr + d);
      const __m256 dx = _mm256_mul_ps(dtv, xv);
      __m256 acc = _mm256_setzero_ps();
      for (int64_t n = 0; n < N; n++) {
        const __m256 decay = exp2_ps(_mm256_mul_ps(dtv, _mm256_loadu_ps(ap + n * D + d)));
        const __m256 hn = _mm256_fmadd_ps(decay, _mm256_loadu_ps(hr + n * D + d), _mm256_mul_ps(_mm256_set1_ps(bm[n]), dx));
        _mm256_storeu_ps(hr + n * D + d, hn);
        acc = _mm256_fmadd_ps(hn, _mm256_set1_ps(cm[n]), acc);
      }
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(skip + d), xv, acc);
      _mm256_storeu_ps(out + d, _mm256_mul_ps(acc, silu_ps(_mm256_loadu_ps(zr + d))));
    }
  }
  return y;
}

TORCH_LIBRARY_FRAGMENT(narrate, m) {
  m.def("conv_step(Tensor xz, Tensor(a!) conv, Tensor w, Tensor b) -> Tensor");
  m.def("ssm_step(Tensor dt, Tensor x, Tensor bc, Tensor z, Tensor A2, Tensor Dskip, Tensor(a!) h) -> Tensor");
}
TORCH_LIBRARY_IMPL(narrate, CPU, m) {
  m.impl("conv_step", &conv_step);
  m.impl("ssm_step", &ssm_step);
}
