// y = x W^T (+ b) for a few rows of x, with W stored in column panels: fp32, int8 or 4-bit.
//
// Why this exists: at batch 1 on a CPU every decoded token reads every weight once, so a
// linear layer should run at the memory's read bandwidth. PyTorch's CPU kernels do not for
// these shapes (measured on 2 AMD EPYC cores, a 1 x 576 by 576 x 1536 product: F.linear fp32
// 47 us, _weight_int8pack_mm 279 us, _weight_int4pack_mm_for_cpu 621 us; a whole SmolLM2-135M
// step of F.linear calls runs at 40% of the read bandwidth). Here the weight is laid out so that
// one thread streams it once, front to back, and every loaded weight vector is used for every
// row of x.
//
// Layout ("panels"): output columns are cut into panels of NP = 32; panel p holds columns
// p*32 .. p*32+31 for every k, k-major: fp32 and int8 as (P, K, 32); 4-bit as (P, K, 16) bytes,
// byte j holding column j in its low nibble and column j+16 in its high nibble. Quantised
// weights carry one scale (and optionally one minimum) per group of `group` consecutive k and
// per column, as (P, K / group, 32) fp32: w[k, n] = scale[g, n] * q[k, n] + min[g, n]. That
// holds GGUF's Q8_0 (scale only), Q4_0 and Q4_1 blocks (scale and minimum, group 32) exactly,
// and per-channel int8 (group = K).
//
// Threads: at::parallel_for over panels (PyTorch's own OpenMP pool and thread count), only when
// the product is large enough to pay for waking them (cpu_common.h). Vectors: GCC vector
// extensions of 16 floats, which compile to AVX-512 (one register) or AVX2 (two).
//
// Dimension names: M rows of x, K input features, N output features, P panels, G groups.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include <immintrin.h>

#include "cpu_common.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {

using attentive_cpu::f32x16;
using attentive_cpu::i32x16;
using attentive_cpu::load_f32;

constexpr int64_t NP = 32;  // output columns per panel
constexpr int MR = 4;       // rows of x per tile (4 x 2 accumulators + 4 x 2 group partials)

typedef int8_t i8x16 __attribute__((vector_size(16)));
typedef uint8_t u8x16 __attribute__((vector_size(16)));

// The weight formats: how the 32 values of row k of a panel become two vectors of 16 floats.
struct F32 {
  using T = float;
  static constexpr int64_t row_elems = NP;
  static inline void load(const float* w, f32x16& lo, f32x16& hi) {
    lo = load_f32(w);
    hi = load_f32(w + 16);
  }
};

// GCC (12) turns a signed-byte vector conversion into scalar code, so int8 -> float uses
// intrinsics where the instruction set has them.
inline f32x16 i8_to_f32(const int8_t* p) {
#if defined(__AVX512F__)
  return (f32x16)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#elif defined(__AVX2__)
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
  const __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)));
  f32x16 out;
  std::memcpy(&out, &lo, sizeof lo);
  std::memcpy(reinterpret_cast<char*>(&out) + sizeof lo, &hi, sizeof hi);
  return out;
#else
  f32x16 out;
  for (int i = 0; i < 16; ++i) out[i] = static_cast<float>(p[i]);
  return out;
#endif
}

struct I8 {
  using T = int8_t;
  static constexpr int64_t row_elems = NP;
  static inline void load(const int8_t* w, f32x16& lo, f32x16& hi) {
    lo = i8_to_f32(w);
    hi = i8_to_f32(w + 16);
  }
};

struct U4 {
  using T = uint8_t;
  static constexpr int64_t row_elems = NP / 2;
  static inline void load(const uint8_t* w, f32x16& lo, f32x16& hi) {
    u8x16 a;
    std::memcpy(&a, w, sizeof a);
    lo = __builtin_convertvector(__builtin_convertvector(a & 15, i32x16), f32x16);
    hi = __builtin_convertvector(__builtin_convertvector(a >> 4, i32x16), f32x16);
  }
};

// One panel for `R` rows of x: out (R, 32) = x (R, K) panel (K, 32), scaled per group.
template <class W, int R>
inline void panel_tile(const float* x, int64_t ldx, const typename W::T* w, const float* scale,
                       const float* mins, const float* xsum, int64_t K, int64_t group, float* out) {
  constexpr int U = R == 1 ? 4 : (R == 2 ? 2 : 1);  // k unrolled U times
  f32x16 acc[R][2] = {};
  const int64_t groups = scale ? K / group : 1;
  const int64_t len = scale ? group : K;
  for (int64_t g = 0; g < groups; ++g) {
    // U independent sums per output vector: with few rows, one chain of dependent FMAs would
    // wait on the FMA latency rather than on memory
    f32x16 part[U][R][2] = {};
    const int64_t k0 = g * len, k1 = k0 + len;
    int64_t k = k0;
    for (; k + U <= k1; k += U) {
      for (int u = 0; u < U; ++u) {
        f32x16 lo, hi;
        W::load(w + (k + u) * W::row_elems, lo, hi);
        for (int r = 0; r < R; ++r) {
          const float xv = x[r * ldx + k + u];
          part[u][r][0] += lo * xv;
          part[u][r][1] += hi * xv;
        }
      }
    }
    for (; k < k1; ++k) {
      f32x16 lo, hi;
      W::load(w + k * W::row_elems, lo, hi);
      for (int r = 0; r < R; ++r) {
        const float xv = x[r * ldx + k];
        part[0][r][0] += lo * xv;
        part[0][r][1] += hi * xv;
      }
    }
    for (int u = 1; u < U; ++u)
      for (int r = 0; r < R; ++r) {
        part[0][r][0] += part[u][r][0];
        part[0][r][1] += part[u][r][1];
      }
    if (scale) {
      const f32x16 s0 = load_f32(scale + g * NP), s1 = load_f32(scale + g * NP + 16);
      for (int r = 0; r < R; ++r) {
        acc[r][0] += part[0][r][0] * s0;
        acc[r][1] += part[0][r][1] * s1;
      }
      if (mins) {
        const f32x16 m0 = load_f32(mins + g * NP), m1 = load_f32(mins + g * NP + 16);
        for (int r = 0; r < R; ++r) {
          const float xs = xsum[r * groups + g];
          acc[r][0] += m0 * xs;
          acc[r][1] += m1 * xs;
        }
      }
    } else {
      for (int r = 0; r < R; ++r) {
        acc[r][0] += part[0][r][0];
        acc[r][1] += part[0][r][1];
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    std::memcpy(out + r * NP, &acc[r][0], sizeof(f32x16));
    std::memcpy(out + r * NP + 16, &acc[r][1], sizeof(f32x16));
  }
}

template <class W>
void tile_rows(int rows, const float* x, int64_t ldx, const typename W::T* w, const float* scale,
               const float* mins, const float* xsum, int64_t K, int64_t group, float* out) {
  switch (rows) {
    case 1: return panel_tile<W, 1>(x, ldx, w, scale, mins, xsum, K, group, out);
    case 2: return panel_tile<W, 2>(x, ldx, w, scale, mins, xsum, K, group, out);
    case 3: return panel_tile<W, 3>(x, ldx, w, scale, mins, xsum, K, group, out);
    default: return panel_tile<W, MR>(x, ldx, w, scale, mins, xsum, K, group, out);
  }
}

void check(bool ok, const char* what) { TORCH_CHECK(ok, "panel_linear: ", what); }

// An optional float32 operand (bias, minimums): its data, checked to be contiguous with `numel`
// elements, or nullptr when it is absent.
const float* optional_floats(const c10::optional<at::Tensor>& t, int64_t numel, const char* what) {
  if (!t.has_value()) return nullptr;
  check(t->scalar_type() == at::kFloat && t->is_contiguous() && t->numel() == numel, what);
  return t->data_ptr<float>();
}

// Copy a tile's rows (NP floats apart) into the output (ld floats apart), the first `width`
// columns, adding the bias (already offset to the tile's first column) when there is one.
inline void store_rows(int rows, const float* tile, float* dst, int64_t ld, int64_t width, const float* bias) {
  for (int r = 0; r < rows; ++r) {
    float* row = dst + r * ld;
    const float* src = tile + r * NP;
    if (bias) {
      for (int64_t j = 0; j < width; ++j) row[j] = src[j] + bias[j];
    } else {
      std::memcpy(row, src, width * sizeof(float));
    }
  }
}

// Shared driver: checks, the (M, N) output, per-group sums of x for minimums, the panel loop.
template <class W>
at::Tensor run(const at::Tensor& x_in, const at::Tensor& panels, const c10::optional<at::Tensor>& scale,
               const c10::optional<at::Tensor>& mins, const c10::optional<at::Tensor>& bias, int64_t group,
               int64_t n_out) {
  check(x_in.dim() == 2 && x_in.scalar_type() == at::kFloat, "x must be a 2-D float32 tensor");
  check(panels.dim() == 3 && panels.size(2) == W::row_elems, "panels must be (P, K, 32) (4-bit: (P, K, 16))");
  const at::Tensor x = x_in.contiguous();
  const int64_t M = x.size(0), K = x.size(1), P = panels.size(0);
  check(panels.size(1) == K, "x has a different number of input features than the panels");
  check(panels.is_contiguous(), "panels must be contiguous");
  check(n_out > (P - 1) * NP && n_out <= P * NP, "n_out does not match the number of panels");
  const float* sp = nullptr;
  const float* mp = nullptr;
  int64_t groups = 1;
  if (scale.has_value()) {
    check(group > 0 && K % group == 0, "group must divide K");
    groups = K / group;
    check(scale->scalar_type() == at::kFloat && scale->is_contiguous() && scale->numel() == P * groups * NP,
          "scale must be contiguous float32 (P, K / group, 32)");
    sp = scale->data_ptr<float>();
    mp = optional_floats(mins, P * groups * NP, "mins must be contiguous float32 (P, K / group, 32)");
  }
  const float* bp = optional_floats(bias, n_out, "bias must be contiguous float32 (N,)");
  at::Tensor y = at::empty({M, n_out}, x.options());
  if (M == 0) return y;
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::Tensor xsum_t;
  const float* xs = nullptr;
  if (mp) {  // sum of x over each group: the minimum's share of every output
    xsum_t = at::empty({M, groups}, x.options());
    float* s = xsum_t.data_ptr<float>();
    for (int64_t m = 0; m < M; ++m)
      for (int64_t g = 0; g < groups; ++g) {
        float t = 0.f;
        for (int64_t k = g * group; k < (g + 1) * group; ++k) t += xp[m * K + k];
        s[m * groups + g] = t;
      }
    xs = s;
  }
  const typename W::T* wp = static_cast<const typename W::T*>(panels.data_ptr());
  const int64_t work = panels.numel() * panels.element_size() + M * n_out * K;
  attentive_cpu::parallel_if_worth_it(P, work, [&](int64_t p0, int64_t p1) {
    alignas(64) float out[MR * NP];
    for (int64_t p = p0; p < p1; ++p) {
      const typename W::T* w = wp + p * K * W::row_elems;
      const float* ps = sp ? sp + p * groups * NP : nullptr;
      const float* pm = mp ? mp + p * groups * NP : nullptr;
      const int64_t n0 = p * NP, width = std::min<int64_t>(NP, n_out - n0);
      for (int64_t m0 = 0; m0 < M; m0 += MR) {
        const int rows = static_cast<int>(std::min<int64_t>(MR, M - m0));
        tile_rows<W>(rows, xp + m0 * K, K, w, ps, pm, xs ? xs + m0 * groups : nullptr, K, group, out);
        store_rows(rows, out, yp + m0 * n_out + n0, n_out, width, bp ? bp + n0 : nullptr);
      }
    }
  });
  return y;
}

// ---------------------------------------------------------------------------------------------
// int8 activations (AVX512-VNNI). Each row of x is quantised in blocks of QB = 32 features,
// q = round(x * 127 / max|x|) with one float scale per block (llama.cpp's Q8_0 for
// activations), and the products are integer dot products of 4 bytes at a time (vpdpbusd,
// unsigned x signed), 16 x 4 multiply-adds an instruction. The weights then sit 4 features
// together: int8 (P, K/4, 32, 4), 4-bit (P, K/4, 16, 4) with column j in the low and column
// j + 16 in the high nibble. vpdpbusd wants one unsigned operand: 4-bit weights are (0..15);
// for int8 weights the activations are shifted to q + 128 and 128 times each block's column
// sums of the weights (`c128`, made when the layer is) are taken off again. Per block and
// column: y += (acc - c128) * scale_x * scale_w; per weight group: y += min * sum(x), with
// x's quantised values, so the kernel computes F.linear(dequantised x, dequantised W).
constexpr int64_t QB = 32;

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
constexpr bool kVnni = true;

// x (M, K) -> q (M, K) int8 and scales (M, K / 32): q = round(x * (127 / amax)), 0 for an all-zero block.
void quantize_blocks(const float* x, int64_t M, int64_t K, int8_t* q, float* scales, float* xsum_q, int64_t groups,
                     int64_t group) {
  const int64_t blocks = K / QB;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t b = 0; b < blocks; ++b) {
      const float* v = x + m * K + b * QB;
      const __m512 a = _mm512_loadu_ps(v), c = _mm512_loadu_ps(v + 16);
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(c)));
      const float inv = amax > 0.f ? 127.f / amax : 0.f;
      scales[m * blocks + b] = amax / 127.f;
      const __m512 vi = _mm512_set1_ps(inv);
      // round to nearest even (the default MXCSR mode), as torch.round does
      const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, vi)), qc = _mm512_cvtps_epi32(_mm512_mul_ps(c, vi));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + m * K + b * QB), _mm512_cvtsepi32_epi8(qa));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + m * K + b * QB + 16), _mm512_cvtsepi32_epi8(qc));
    }
    if (xsum_q) {  // sum of the dequantised x over each weight group (the minimums' share)
      for (int64_t g = 0; g < groups; ++g) {
        float t = 0.f;
        for (int64_t b = g * group / QB; b < (g + 1) * group / QB; ++b) {
          int32_t s = 0;
          for (int64_t k = 0; k < QB; ++k) s += q[m * K + b * QB + k];
          t += static_cast<float>(s) * scales[m * blocks + b];
        }
        xsum_q[m * groups + g] = t;
      }
    }
  }
}

// One panel for R rows: out (R, 32). `xq` holds the rows' bytes (int8 + 128 for int8 weights,
// int8 for 4-bit ones), `sx` their block scales (R, K / 32).
template <bool FourBit, int R>
inline void vnni_tile(const uint8_t* xq, int64_t K, const float* sx, const uint8_t* w, const float* scale,
                      const float* mins, const int32_t* c128, const float* xsum, int64_t groups, int64_t group,
                      float* out) {
  const int64_t blocks = K / QB, per_group = group / QB;
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  constexpr int64_t quad_bytes = FourBit ? 64 : 128;  // 32 columns x 4 features
  for (int64_t b = 0; b < blocks; ++b) {
    __m512i ai[R][2];
    for (int r = 0; r < R; ++r) ai[r][0] = ai[r][1] = _mm512_setzero_si512();
    const uint8_t* wb = w + b * (QB / 4) * quad_bytes;
    for (int64_t q = 0; q < QB / 4; ++q) {
      __m512i w0, w1;
      if constexpr (FourBit) {
        const __m512i v = _mm512_loadu_si512(wb + q * 64);
        w0 = _mm512_and_si512(v, low4);
        w1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
      } else {
        w0 = _mm512_loadu_si512(wb + q * 128);
        w1 = _mm512_loadu_si512(wb + q * 128 + 64);
      }
      for (int r = 0; r < R; ++r) {
        int32_t four;
        std::memcpy(&four, xq + r * K + b * QB + q * 4, 4);
        const __m512i xb = _mm512_set1_epi32(four);
        if constexpr (FourBit) {  // unsigned weights x signed activations
          ai[r][0] = _mm512_dpbusd_epi32(ai[r][0], w0, xb);
          ai[r][1] = _mm512_dpbusd_epi32(ai[r][1], w1, xb);
        } else {  // unsigned (shifted) activations x signed weights
          ai[r][0] = _mm512_dpbusd_epi32(ai[r][0], xb, w0);
          ai[r][1] = _mm512_dpbusd_epi32(ai[r][1], xb, w1);
        }
      }
    }
    const int64_t g = b / per_group;
    const __m512 s0 = _mm512_loadu_ps(scale + g * NP), s1 = _mm512_loadu_ps(scale + g * NP + 16);
    __m512i c0 = _mm512_setzero_si512(), c1 = _mm512_setzero_si512();
    if constexpr (!FourBit) {
      c0 = _mm512_loadu_si512(c128 + b * NP);
      c1 = _mm512_loadu_si512(c128 + b * NP + 16);
    }
    for (int r = 0; r < R; ++r) {
      const __m512 xs = _mm512_set1_ps(sx[r * blocks + b]);
      acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(ai[r][0], c0)), _mm512_mul_ps(s0, xs), acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(ai[r][1], c1)), _mm512_mul_ps(s1, xs), acc[r][1]);
    }
    if (mins && (b + 1) % per_group == 0) {
      const __m512 m0 = _mm512_loadu_ps(mins + g * NP), m1 = _mm512_loadu_ps(mins + g * NP + 16);
      for (int r = 0; r < R; ++r) {
        const __m512 xs = _mm512_set1_ps(xsum[r * groups + g]);
        acc[r][0] = _mm512_fmadd_ps(m0, xs, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(m1, xs, acc[r][1]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(out + r * NP, acc[r][0]);
    _mm512_storeu_ps(out + r * NP + 16, acc[r][1]);
  }
}

template <bool FourBit>
void vnni_rows(int rows, const uint8_t* xq, int64_t K, const float* sx, const uint8_t* w, const float* scale,
               const float* mins, const int32_t* c128, const float* xsum, int64_t groups, int64_t group, float* out) {
  switch (rows) {
    case 1: return vnni_tile<FourBit, 1>(xq, K, sx, w, scale, mins, c128, xsum, groups, group, out);
    case 2: return vnni_tile<FourBit, 2>(xq, K, sx, w, scale, mins, c128, xsum, groups, group, out);
    case 3: return vnni_tile<FourBit, 3>(xq, K, sx, w, scale, mins, c128, xsum, groups, group, out);
    default: return vnni_tile<FourBit, MR>(xq, K, sx, w, scale, mins, c128, xsum, groups, group, out);
  }
}
#else
constexpr bool kVnni = false;
#endif

template <bool FourBit>
at::Tensor run_vnni(const at::Tensor& x_in, const at::Tensor& panels, const at::Tensor& scale,
                    const c10::optional<at::Tensor>& mins, const c10::optional<at::Tensor>& c128,
                    const c10::optional<at::Tensor>& bias, int64_t group, int64_t n_out) {
  check(kVnni, "int8 activations need a CPU with AVX512-VNNI (and this library built for it)");
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
  check(x_in.dim() == 2 && x_in.scalar_type() == at::kFloat, "x must be a 2-D float32 tensor");
  const at::Tensor x = x_in.contiguous();
  const int64_t M = x.size(0), K = x.size(1), P = panels.size(0);
  check(K % QB == 0 && group % QB == 0 && K % group == 0, "K and the group must be multiples of 32");
  check(panels.dim() == 4 && panels.size(1) * 4 == K && panels.size(2) == (FourBit ? 16 : 32) && panels.size(3) == 4 &&
            panels.is_contiguous(), "panels must be contiguous (P, K / 4, 32, 4) (4-bit: (P, K / 4, 16, 4))");
  check(n_out > (P - 1) * NP && n_out <= P * NP, "n_out does not match the number of panels");
  const int64_t groups = K / group, blocks = K / QB;
  check(scale.scalar_type() == at::kFloat && scale.is_contiguous() && scale.numel() == P * groups * NP,
        "scale must be contiguous float32 (P, K / group, 32)");
  const float* mp = optional_floats(mins, P * groups * NP, "mins must be contiguous float32 (P, K / group, 32)");
  const int32_t* cp = nullptr;
  if (!FourBit) {
    check(c128.has_value() && c128->scalar_type() == at::kInt && c128->is_contiguous() &&
              c128->numel() == P * blocks * NP, "c128 must be contiguous int32 (P, K / 32, 32)");
    cp = c128->data_ptr<int32_t>();
  }
  const float* bp = optional_floats(bias, n_out, "bias must be contiguous float32 (N,)");
  at::Tensor y = at::empty({M, n_out}, x.options());
  if (M == 0) return y;
  at::Tensor q = at::empty({M, K}, x.options().dtype(at::kChar));
  at::Tensor sx = at::empty({M, blocks}, x.options());
  at::Tensor xs = mp ? at::empty({M, groups}, x.options()) : at::Tensor();
  int8_t* qp = q.data_ptr<int8_t>();
  quantize_blocks(x.data_ptr<float>(), M, K, qp, sx.data_ptr<float>(), mp ? xs.data_ptr<float>() : nullptr, groups,
                  group);
  if (!FourBit) {  // unsigned operand: q + 128
    for (int64_t i = 0; i < M * K; ++i) qp[i] = static_cast<int8_t>(static_cast<uint8_t>(qp[i]) ^ 0x80);
  }
  const uint8_t* xq = reinterpret_cast<const uint8_t*>(qp);
  const float* sxp = sx.data_ptr<float>();
  const float* xsp = mp ? xs.data_ptr<float>() : nullptr;
  const uint8_t* wp = static_cast<const uint8_t*>(panels.data_ptr());
  const float* sp = scale.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const int64_t panel_bytes = (K / 4) * (FourBit ? 64 : 128);
  const int64_t work = P * panel_bytes + M * n_out * K / 4;
  attentive_cpu::parallel_if_worth_it(P, work, [&](int64_t p0, int64_t p1) {
    alignas(64) float out[MR * NP];
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n0 = p * NP, width = std::min<int64_t>(NP, n_out - n0);
      for (int64_t m0 = 0; m0 < M; m0 += MR) {
        const int rows = static_cast<int>(std::min<int64_t>(MR, M - m0));
        vnni_rows<FourBit>(rows, xq + m0 * K, K, sxp + m0 * blocks, wp + p * panel_bytes, sp + p * groups * NP,
                           mp ? mp + p * groups * NP : nullptr, cp ? cp + p * blocks * NP : nullptr,
                           xsp ? xsp + m0 * groups : nullptr, groups, group, out);
        store_rows(rows, out, yp + m0 * n_out + n0, n_out, width, bp ? bp + n0 : nullptr);
      }
    }
  });
  return y;
#else
  return at::Tensor();
#endif
}

at::Tensor linear_i8_act8(const at::Tensor& x, const at::Tensor& panels, const at::Tensor& scale,
                          const c10::optional<at::Tensor>& mins, const at::Tensor& c128,
                          const c10::optional<at::Tensor>& bias, int64_t group, int64_t n_out) {
  check(panels.scalar_type() == at::kChar, "int8 panels must be int8");
  return run_vnni<false>(x, panels, scale, mins, c128, bias, group, n_out);
}

at::Tensor linear_u4_act8(const at::Tensor& x, const at::Tensor& panels, const at::Tensor& scale,
                          const c10::optional<at::Tensor>& mins, const c10::optional<at::Tensor>& bias, int64_t group,
                          int64_t n_out) {
  check(panels.scalar_type() == at::kByte, "4-bit panels must be uint8 (two values a byte)");
  return run_vnni<true>(x, panels, scale, mins, c10::nullopt, bias, group, n_out);
}

bool has_act8() { return kVnni; }

at::Tensor linear_f32(const at::Tensor& x, const at::Tensor& panels, const c10::optional<at::Tensor>& bias,
                      int64_t n_out) {
  check(panels.scalar_type() == at::kFloat, "fp32 panels must be float32");
  return run<F32>(x, panels, c10::nullopt, c10::nullopt, bias, 0, n_out);
}

at::Tensor linear_i8(const at::Tensor& x, const at::Tensor& panels, const at::Tensor& scale,
                     const c10::optional<at::Tensor>& mins, const c10::optional<at::Tensor>& bias, int64_t group,
                     int64_t n_out) {
  check(panels.scalar_type() == at::kChar, "int8 panels must be int8");
  return run<I8>(x, panels, scale, mins, bias, group, n_out);
}

at::Tensor linear_u4(const at::Tensor& x, const at::Tensor& panels, const at::Tensor& scale,
                     const c10::optional<at::Tensor>& mins, const c10::optional<at::Tensor>& bias, int64_t group,
                     int64_t n_out) {
  check(panels.scalar_type() == at::kByte, "4-bit panels must be uint8 (two values a byte)");
  return run<U4>(x, panels, scale, mins, bias, group, n_out);
}

}  // namespace

TORCH_LIBRARY(attentive_cpu, m) {
  m.def("linear_f32(Tensor x, Tensor panels, Tensor? bias, int n_out) -> Tensor");
  m.def("linear_i8(Tensor x, Tensor panels, Tensor scale, Tensor? mins, Tensor? bias, int group, int n_out) -> Tensor");
  m.def("linear_u4(Tensor x, Tensor panels, Tensor scale, Tensor? mins, Tensor? bias, int group, int n_out) -> Tensor");
  m.def("linear_i8_act8(Tensor x, Tensor panels, Tensor scale, Tensor? mins, Tensor c128, Tensor? bias, int group, "
        "int n_out) -> Tensor");
  m.def("linear_u4_act8(Tensor x, Tensor panels, Tensor scale, Tensor? mins, Tensor? bias, int group, int n_out) "
        "-> Tensor");
  m.def("has_act8() -> bool", &has_act8);
}

TORCH_LIBRARY_IMPL(attentive_cpu, CPU, m) {
  m.impl("linear_f32", &linear_f32);
  m.impl("linear_i8", &linear_i8);
  m.impl("linear_u4", &linear_u4);
  m.impl("linear_i8_act8", &linear_i8_act8);
  m.impl("linear_u4_act8", &linear_u4_act8);
}
