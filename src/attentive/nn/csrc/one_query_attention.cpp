// Attention for one query per row on CPU: out = softmax(q K^T * scale + bias, masked) V.
//
// Why this exists: while decoding, each new token is one query against the cached keys, a
// product of a few hundred kilobytes a layer that one core reads in tens of microseconds.
// PyTorch's CPU paths for it are slower than the work: SDPA's flash kernel and MKL's batched
// matmul both split even one query over the threads, and waking them costs more than the
// product (measured on 2 EPYC cores with OMP_WAIT_POLICY=PASSIVE, 6 heads of 64 over 70 keys:
// matmul + softmax + matmul 118 us on two threads, 13 us on one; SDPA 56 us); and inductor
// rewrites a written-out matmul-softmax-matmul back into SDPA (a Whisper decoder step spent
// 563 us a layer there over its 1,500 encoder positions). Here one call reads each key and
// value once, for all the query heads that share it (grouped-query attention copies nothing),
// on the caller's thread unless the keys are long enough to pay for waking the others.
//
// Shapes: q (B, H, 1, Dh), k and v (B, Hkv, Tk, Dh) with H a multiple of Hkv, each with its
// last dimension contiguous (a view into a larger static cache is fine); mask bool and bias
// float broadcastable to (B, H, 1, Tk); out (B, H, 1, Dh). A row whose keys are all masked gets
// zeros. Dimension names: B batch, H query heads, Hkv key/value heads, G = H / Hkv, Tk keys.
//
// With a mask, each key/value head reads only the span of keys its query heads may attend (from
// the first allowed key to the last, rounded out to blocks of 16): a static cache of 2,048 slots
// holding 64 tokens (a row's first n slots, or its last n when rows are right-aligned) costs
// what 64 keys cost, plus a scan of the bool mask, and gives the same bits as computing over all
// 2,048 with the rest masked. Masked keys inside the span are masked as before.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "cpu_common.h"

namespace {

using attentive_cpu::f32x16;
using attentive_cpu::load_f32;
using attentive_cpu::store_f32;
using attentive_cpu::exp16;
using attentive_cpu::i32x16;

void check(bool ok, const char* what) { TORCH_CHECK(ok, "one_query_attention: ", what); }

inline float sum16(f32x16 v) {
  float s = 0.f;
  for (int i = 0; i < 16; ++i) s += v[i];
  return s;
}

inline float dot(const float* a, const float* b, int64_t n) {
  f32x16 acc = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc += load_f32(a + i) * load_f32(b + i);
  float s = sum16(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// softmax of n scores in place (masked ones are -inf); false when every score is masked.
bool softmax_inplace(float* s, int64_t n) {
  float top = -std::numeric_limits<float>::infinity();
  for (int64_t t = 0; t < n; ++t) top = std::max(top, s[t]);
  if (top == -std::numeric_limits<float>::infinity()) return false;
  f32x16 total = {};
  int64_t t = 0;
  for (; t + 16 <= n; t += 16) {
    const f32x16 e = exp16(load_f32(s + t) - top);
    store_f32(s + t, e);
    total += e;
  }
  float sum = sum16(total);
  for (; t < n; ++t) {
    s[t] = std::exp(s[t] - top);
    sum += s[t];
  }
  const float inv = 1.f / sum;
  for (int64_t i = 0; i < n; ++i) s[i] *= inv;
  return true;
}


#if defined(__GNUC__) && !defined(__clang__)
#define SHUFFLE2(a, b, ...) __builtin_shuffle(a, b, i32x16{__VA_ARGS__})
#else
#define SHUFFLE2(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#endif

// Lane sums of two vectors, packed: lanes 0-7 hold partial sums of a, lanes 8-15 of b (and so on
// down the tree), so 16 dot products end in one vector after 15 shuffle-adds, not 16 full
// horizontal sums.
inline f32x16 fold8(f32x16 a, f32x16 b) {
  return SHUFFLE2(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
         SHUFFLE2(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
}
inline f32x16 fold4(f32x16 a, f32x16 b) {
  return SHUFFLE2(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
         SHUFFLE2(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
}
inline f32x16 fold2(f32x16 a, f32x16 b) {
  return SHUFFLE2(a, b, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
         SHUFFLE2(a, b, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
}
inline f32x16 fold1(f32x16 a, f32x16 b) {
  return SHUFFLE2(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
         SHUFFLE2(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

// v[j] = sum of the lanes of a[j], j = 0..15.
inline f32x16 lane_sums(const f32x16 (&a)[16]) {
  f32x16 l1[8], l2[4], l3[2];
  for (int i = 0; i < 8; ++i) l1[i] = fold8(a[2 * i], a[2 * i + 1]);
  for (int i = 0; i < 4; ++i) l2[i] = fold4(l1[2 * i], l1[2 * i + 1]);
  for (int i = 0; i < 2; ++i) l3[i] = fold2(l2[2 * i], l2[2 * i + 1]);
  return fold1(l3[0], l3[1]);
}

// One key/value head against its G query heads, head_dim = 16 * DV: raw scores q.k into
// `scores` (G, Tk), keys in blocks of 16 (a block stays in L1 while every query head reads it).
template <int DV>
void raw_scores(const float* const* qs, int64_t G, const float* kb, int64_t ks, int64_t Tk, float* scores) {
  int64_t t0 = 0;
  for (; t0 + 16 <= Tk; t0 += 16) {
    for (int64_t g = 0; g < G; ++g) {
      f32x16 qv[DV];
      for (int c = 0; c < DV; ++c) qv[c] = load_f32(qs[g] + 16 * c);
      f32x16 acc[16];
      for (int j = 0; j < 16; ++j) {
        const float* kt = kb + (t0 + j) * ks;
        f32x16 a = qv[0] * load_f32(kt);
        for (int c = 1; c < DV; ++c) a += qv[c] * load_f32(kt + 16 * c);
        acc[j] = a;
      }
      store_f32(scores + g * Tk + t0, lane_sums(acc));
    }
  }
  for (; t0 < Tk; ++t0)
    for (int64_t g = 0; g < G; ++g) scores[g * Tk + t0] = dot(qs[g], kb + t0 * ks, 16 * DV);
}

// out_g (16 * DV) = weights_g (Tk) V (Tk, 16 * DV) for every g, the accumulator in registers.
template <int DV>
void weighted_values(const float* scores, int64_t G, const float* vb, int64_t vs, int64_t Tk, float* const* outs) {
  for (int64_t g = 0; g < G; ++g) {
    const float* w = scores + g * Tk;
    f32x16 acc[DV] = {};
    for (int64_t t = 0; t < Tk; ++t) {
      const float* vt = vb + t * vs;
      for (int c = 0; c < DV; ++c) acc[c] += load_f32(vt + 16 * c) * w[t];
    }
    for (int c = 0; c < DV; ++c) store_f32(outs[g] + 16 * c, acc[c]);
  }
}

void raw_scores_any(const float* const* qs, int64_t G, const float* kb, int64_t ks, int64_t Tk, int64_t Dh,
                    float* scores) {
  for (int64_t t = 0; t < Tk; ++t)
    for (int64_t g = 0; g < G; ++g) scores[g * Tk + t] = dot(qs[g], kb + t * ks, Dh);
}

void weighted_values_any(const float* scores, int64_t G, const float* vb, int64_t vs, int64_t Tk, int64_t Dh,
                         float* const* outs) {
  for (int64_t g = 0; g < G; ++g) {
    float* o = outs[g];
    std::fill(o, o + Dh, 0.f);
    for (int64_t t = 0; t < Tk; ++t) {
      const float w = scores[g * Tk + t];
      const float* vt = vb + t * vs;
      for (int64_t d = 0; d < Dh; ++d) o[d] += vt[d] * w;
    }
  }
}

// The first true of the n flags p[0], p[stride], ...; n when none is. With stride 1, 32 flags
// at a time (a slot cache's padding is thousands of flags).
int64_t first_true(const bool* p, int64_t n, int64_t stride) {
  if (stride == 0) return n > 0 && *p ? 0 : n;  // one flag for every key
  int64_t t = 0;
  if (stride == 1) {
    for (; t + 32 <= n; t += 32) {
      uint64_t w[4];
      std::memcpy(w, p + t, sizeof w);
      if (w[0] | w[1] | w[2] | w[3]) break;
    }
  }
  for (; t < n; ++t)
    if (p[t * stride]) return t;
  return n;
}

// One past the last true of the n flags p[0], p[stride], ...; 0 when none is.
int64_t end_of_trues(const bool* p, int64_t n, int64_t stride) {
  if (stride == 0) return n > 0 && *p ? n : 0;
  int64_t t = n;
  if (stride == 1) {
    for (; t >= 32; t -= 32) {
      uint64_t w[4];
      std::memcpy(w, p + t - 32, sizeof w);
      if (w[0] | w[1] | w[2] | w[3]) break;
    }
  }
  for (; t > 0; --t)
    if (p[(t - 1) * stride]) return t;
  return 0;
}

// The smallest [t0, t1) holding every key that one of the G mask rows (row g at p + g * hs, keys
// ks apart) allows; t0 == t1 when none does. Later rows only scan outside the span found so far.
std::pair<int64_t, int64_t> allowed_span(const bool* p, int64_t G, int64_t hs, int64_t ks, int64_t Tk) {
  int64_t t0 = Tk, t1 = 0;
  for (int64_t g = 0; g < (hs == 0 ? 1 : G); ++g) {  // a mask broadcast over heads: one row
    const bool* row = p + g * hs;
    if (t0 >= t1) {  // nothing allowed yet: this row's own span
      t0 = first_true(row, Tk, ks);
      t1 = t0 == Tk ? 0 : t0 + end_of_trues(row + t0 * ks, Tk - t0, ks);
      continue;
    }
    t0 = first_true(row, t0, ks);
    t1 += end_of_trues(row + t1 * ks, Tk - t1, ks);
  }
  return t0 < t1 ? std::make_pair(t0, t1) : std::make_pair(int64_t(0), int64_t(0));
}

at::Tensor attend_one(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      const c10::optional<at::Tensor>& mask, const c10::optional<at::Tensor>& bias, double scale) {
  check(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "q, k, v must be 4-D (batch, heads, seq, head_dim)");
  check(q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat && v.scalar_type() == at::kFloat,
        "q, k, v must be float32");
  const int64_t B = q.size(0), H = q.size(1), Dh = q.size(3), Hkv = k.size(1), Tk = k.size(2);
  check(q.size(2) == 1, "q must hold one query per row");
  check(k.size(0) == B && v.size(0) == B && v.size(1) == Hkv && v.size(2) == Tk, "k and v must match q's batch");
  check(k.size(3) == Dh && v.size(3) == Dh, "k and v must have q's head_dim");
  check(Hkv > 0 && H % Hkv == 0, "query heads must be a multiple of key/value heads");
  check(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1, "head_dim must be contiguous in q, k, v");
  const int64_t G = H / Hkv;
  at::Tensor m_view, b_view;
  const bool* mp = nullptr;
  const float* bp = nullptr;
  if (mask.has_value()) {
    check(mask->scalar_type() == at::kBool, "mask must be bool (True = may attend)");
    m_view = mask->expand({B, H, 1, Tk});
    mp = m_view.data_ptr<bool>();
  }
  if (bias.has_value()) {
    check(bias->scalar_type() == at::kFloat, "bias must be float32");
    b_view = bias->expand({B, H, 1, Tk});
    bp = b_view.data_ptr<float>();
  }
  at::Tensor out = at::empty({B, H, 1, Dh}, q.options());
  if (B == 0 || H == 0) return out;
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const float sc = static_cast<float>(scale);
  // Each task (b, hk) reads keys [span[2 task], span[2 task + 1]): all of them without a mask,
  // else those its query heads' mask rows allow, first to last (scanning the bool mask costs far
  // less than the dot products it saves over a mostly empty static cache). The span is widened
  // to whole blocks of 16 keys counted from key 0 (at most 15 keys each side), so every key
  // takes the same code path (16-key blocks, the tail's scalar dot and exp) and every sum adds
  // the same terms in the same lanes as over the whole cache: the keys left out only added exact
  // zeros (weight 0 times a finite value), and the results are bit for bit those of the full
  // computation.
  const int64_t tasks = B * Hkv;
  std::vector<int64_t> span(2 * tasks);
  int64_t keys_read = 0, widest = 0;
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t b = task / Hkv, hk = task % Hkv;
    std::pair<int64_t, int64_t> s{0, Tk};
    if (mp) {
      const bool* rows = mp + b * m_view.stride(0) + hk * G * m_view.stride(1);  // head hk * G's mask row
      s = allowed_span(rows, G, m_view.stride(1), m_view.stride(3), Tk);
      if (s.first < s.second) {  // out to whole blocks of 16 keys counted from key 0: see above
        s.first -= s.first % 16;
        s.second = std::min(Tk, (s.second + 15) / 16 * 16);
      }
    }
    span[2 * task] = s.first;
    span[2 * task + 1] = s.second;
    keys_read += s.second - s.first;
    widest = std::max(widest, s.second - s.first);
  }
  // Work as the panel kernel counts it (bytes read + multiply-adds), halved: this loop does about
  // twice as much of it a microsecond (1,500 keys x 6 heads of 64, 5.8M, take 61 us on one
  // core and 89 us on two; 4,096 keys x 3 heads, 8.7M, 198 us on one and 170 us on two). Counted
  // over the keys the spans hold, not the cache's length: a big, mostly masked cache is little
  // work and should not wake the threads.
  const int64_t work = keys_read * (2 * Dh * static_cast<int64_t>(sizeof(float)) + 2 * G * Dh) / 2;
  const int64_t bs = bp ? b_view.stride(3) : 0, ms = mp ? m_view.stride(3) : 0;  // between keys
  attentive_cpu::parallel_if_worth_it(tasks, work, [&](int64_t task0, int64_t task1) {
    std::vector<float> scores(G * widest);
    std::vector<const float*> qs(G);
    std::vector<float*> outs(G);
    for (int64_t task = task0; task < task1; ++task) {
      const int64_t b = task / Hkv, hk = task % Hkv;
      const int64_t t0 = span[2 * task], n = span[2 * task + 1] - t0;  // keys t0 .. t0 + n - 1
      for (int64_t g = 0; g < G; ++g) {
        qs[g] = qp + b * q.stride(0) + (hk * G + g) * q.stride(1);
        outs[g] = op + (b * H + hk * G + g) * Dh;
      }
      if (n == 0) {  // every key masked for these heads: zero outputs
        for (int64_t g = 0; g < G; ++g) std::fill(outs[g], outs[g] + Dh, 0.f);
        continue;
      }
      const float* kb = kp + b * k.stride(0) + hk * k.stride(1) + t0 * k.stride(2);
      const float* vb = vp + b * v.stride(0) + hk * v.stride(1) + t0 * v.stride(2);
      switch (Dh) {  // scores (G, n): each key read once for the G query heads that share it
        case 32: raw_scores<2>(qs.data(), G, kb, k.stride(2), n, scores.data()); break;
        case 64: raw_scores<4>(qs.data(), G, kb, k.stride(2), n, scores.data()); break;
        case 128: raw_scores<8>(qs.data(), G, kb, k.stride(2), n, scores.data()); break;
        default: raw_scores_any(qs.data(), G, kb, k.stride(2), n, Dh, scores.data());
      }
      for (int64_t g = 0; g < G; ++g) {
        const int64_t h = hk * G + g;
        float* row = scores.data() + g * n;
        const float* brow = bp ? bp + b * b_view.stride(0) + h * b_view.stride(1) + t0 * bs : nullptr;
        const bool* mrow = mp ? mp + b * m_view.stride(0) + h * m_view.stride(1) + t0 * ms : nullptr;
        // Scaled, then the bias added in a loop of its own: the product is rounded before the
        // add, never fused into one FMA, however the compiler treats `a * b + c`.
        for (int64_t t = 0; t < n; ++t) row[t] *= sc;
        if (brow)
          for (int64_t t = 0; t < n; ++t) row[t] += brow[t * bs];
        if (mrow)
          for (int64_t t = 0; t < n; ++t)
            if (!mrow[t * ms]) row[t] = -std::numeric_limits<float>::infinity();
        if (!softmax_inplace(row, n)) std::fill(row, row + n, 0.f);  // every key masked: a zero output
      }
      switch (Dh) {  // out (G, Dh) = weights (G, n) V (n, Dh)
        case 32: weighted_values<2>(scores.data(), G, vb, v.stride(2), n, outs.data()); break;
        case 64: weighted_values<4>(scores.data(), G, vb, v.stride(2), n, outs.data()); break;
        case 128: weighted_values<8>(scores.data(), G, vb, v.stride(2), n, outs.data()); break;
        default: weighted_values_any(scores.data(), G, vb, v.stride(2), n, Dh, outs.data());
      }
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(attentive_cpu, m) {
  m.def("attend_one(Tensor q, Tensor k, Tensor v, Tensor? mask, Tensor? bias, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(attentive_cpu, CPU, m) { m.impl("attend_one", &attend_one); }
