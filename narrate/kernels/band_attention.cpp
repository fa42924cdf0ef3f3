// One decoding step's cross-attention of one layer over each stream's text band and its speaker
// tokens (narrate/engine/model.py, NarrateModel.decode_step; attention.decode_keys with torch's
// scaled_dot_product_attention is the fallback and the reference). The band's keys are rotated
// by their offset from the tracked position as they are read (rotary positions; the query sits
// at 0), the speaker keys are not; a softmax over the valid ones weighs the values. In torch this
// was a dozen operations a step (rotating, concatenating the band and speaker keys of every
// layer, four attention calls) whose copies and overhead cost far more than the arithmetic: a
// head attends to 10 keys of 64 numbers. Each (stream, head) is computed on its own, in one
// order: a stream's result does not depend on its batch.
#include <ATen/ATen.h>
#include <torch/library.h>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

inline float dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  float acc = 0.f;
  for (int64_t i = 0; i < n; i++) acc += a[i] * b[i];
  return acc;
}

// out += p * v
inline void axpy(float p, const float* __restrict v, float* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] += p * v[i];
}

}  // namespace

// q [B, H * dh] the layer's queries; band_kv [B, W, X, 2, H, dh] each stream's band of text
// keys/values (all X cross layers); valid [B, W] bool; speaker_kv [B, X, 2, Ns, H, dh]; cos, sin
// [W, 1, dh / 2] the rotation of each band offset; layer in [0, X). Returns [B, H * dh].
at::Tensor band_attention(at::Tensor q, at::Tensor band_kv, at::Tensor valid, at::Tensor speaker_kv, at::Tensor cos,
                          at::Tensor sin, int64_t layer) {
  TORCH_CHECK(band_kv.dim() == 6 && band_kv.size(3) == 2 && speaker_kv.dim() == 6 && speaker_kv.size(2) == 2,
              "band_attention: band_kv [B, W, X, 2, H, dh], speaker_kv [B, X, 2, Ns, H, dh]");
  const int64_t B = band_kv.size(0), W = band_kv.size(1), X = band_kv.size(2), H = band_kv.size(4),
                dh = band_kv.size(5), Ns = speaker_kv.size(3), half = dh / 2;
  TORCH_CHECK(q.scalar_type() == at::kFloat && band_kv.scalar_type() == at::kFloat &&
              speaker_kv.scalar_type() == at::kFloat && cos.scalar_type() == at::kFloat &&
              sin.scalar_type() == at::kFloat && valid.scalar_type() == at::kBool, "band_attention: float32, bool mask");
  TORCH_CHECK(q.dim() == 2 && q.size(0) == B && q.size(1) == H * dh && dh % 2 == 0, "band_attention: q [B, H * dh]");
  TORCH_CHECK(speaker_kv.size(0) == B && speaker_kv.size(1) == X && speaker_kv.size(4) == H && speaker_kv.size(5) == dh);
  TORCH_CHECK(valid.dim() == 2 && valid.size(0) == B && valid.size(1) == W, "band_attention: valid [B, W]");
  TORCH_CHECK(cos.numel() == W * half && sin.numel() == W * half, "band_attention: rotations [W, 1, dh / 2]");
  TORCH_CHECK(0 <= layer && layer < X, "band_attention: no such layer");
  const at::Tensor qc = q.contiguous(), kv = band_kv.contiguous(), sk = speaker_kv.contiguous(),
                   ok = valid.contiguous(), cc = cos.contiguous(), sc = sin.contiguous();
  const float* qp = qc.data_ptr<float>();
  const float* kvp = kv.data_ptr<float>();
  const float* skp = sk.data_ptr<float>();
  const bool* okp = ok.data_ptr<bool>();
  const float* cp = cc.data_ptr<float>();
  const float* sp = sc.data_ptr<float>();
  auto out = at::zeros({B, H * dh}, q.options());
  float* op = out.data_ptr<float>();
  const float scale = 1.f / std::sqrt((float)dh);
  std::vector<float> score(W + Ns), rotated(dh);
  // element (b, w or n, kind, h) of the band / speaker tensors, at this layer
  auto band = [&](int64_t b, int64_t w, int64_t kind, int64_t h) {
    return kvp + ((((b * W + w) * X + layer) * 2 + kind) * H + h) * dh;
  };
  auto speaker = [&](int64_t b, int64_t n, int64_t kind, int64_t h) {
    return skp + ((((b * X + layer) * 2 + kind) * Ns + n) * H + h) * dh;
  };
  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < H; h++) {
      const float* qv = qp + (b * H + h) * dh;
      float top = -std::numeric_limits<float>::infinity();
      for (int64_t w = 0; w < W; w++) {
        if (!okp[b * W + w]) continue;
        const float* k = band(b, w, 0, h);
        const float* c = cp + w * half;
        const float* s = sp + w * half;
        for (int64_t i = 0; i < half; i++) {  // as attention.rotate: [k1 cos - k2 sin, k1 sin + k2 cos]
          rotated[i] = k[i] * c[i] - k[i + half] * s[i];
          rotated[i + half] = k[i] * s[i] + k[i + half] * c[i];
        }
        score[w] = dot(qv, rotated.data(), dh) * scale;
        top = std::max(top, score[w]);
      }
      for (int64_t n = 0; n < Ns; n++) {
        score[W + n] = dot(qv, speaker(b, n, 0, h), dh) * scale;
        top = std::max(top, score[W + n]);
      }
      float total = 0.f;
      for (int64_t j = 0; j < W + Ns; j++) {
        const bool used = j >= W || okp[b * W + j];
        score[j] = used ? std::exp(score[j] - top) : 0.f;
        total += score[j];
      }
      float* o = op + (b * H + h) * dh;
      for (int64_t w = 0; w < W; w++)
        if (score[w] > 0.f) axpy(score[w] / total, band(b, w, 1, h), o, dh);
      for (int64_t n = 0; n < Ns; n++) axpy(score[W + n] / total, speaker(b, n, 1, h), o, dh);
    }
  }
  return out;
}

TORCH_LIBRARY_FRAGMENT(narrate, m) {
  m.def("band_attention(Tensor q, Tensor band_kv, Tensor valid, Tensor speaker_kv, Tensor cos, Tensor sin, "
        "int layer) -> Tensor");
}
TORCH_LIBRARY_IMPL(narrate, CPU, m) {
  m.impl("band_attention", &band_attention);
}
