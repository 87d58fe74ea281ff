// What the CPU kernels share: 16-float vectors and the rule for when a call wakes the threads.
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace attentive_cpu {

// GCC vector extensions of 16 floats: one AVX-512 register, or two AVX2 ones.
typedef float f32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));

inline f32x16 load_f32(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store_f32(float* p, f32x16 v) { std::memcpy(p, &v, sizeof v); }

// exp(x) for 16 floats (Cephes' expf polynomial, within 2 ulp of std::exp); 0 below -87.3.
inline f32x16 exp16(f32x16 x) {
  const f32x16 lowest = f32x16{} - 87.33654f;
  const i32x16 underflow = x < lowest;
  x = x < lowest ? lowest : x;
  x = x > 88.37626f ? f32x16{} + 88.37626f : x;
  const f32x16 magic = f32x16{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const f32x16 n = (x * 1.44269504088896341f + magic) - magic;
  const f32x16 r = x - n * 0.693359375f + n * 2.12194440e-4f;
  f32x16 p = f32x16{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const i32x16 bits = (__builtin_convertvector(n, i32x16) + 127) << 23;
  f32x16 two_n;
  std::memcpy(&two_n, &bits, sizeof bits);
  const f32x16 y = p * two_n;
  i32x16 y_bits;
  std::memcpy(&y_bits, &y, sizeof y);
  y_bits &= ~underflow;
  f32x16 out;
  std::memcpy(&out, &y_bits, sizeof out);
  return out;
}

inline int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoll(v) : fallback;
}

// Threads. A decoded token makes about a hundred kernel calls, most of them tens of
// microseconds long, and waking OpenMP's sleeping team costs about that much (on 2 cores with
// OMP_WAIT_POLICY=PASSIVE, the polite setting on a shared machine: a 576 x 576 int8 product
// takes 13 us on one thread and 63 us on two), while one core alone already reads memory near
// the machine's bandwidth. So a call runs its `tasks` on PyTorch's threads (at::parallel_for)
// only when its work, bytes read plus multiply-adds, exceeds `parallel_min`
// (ATTENTIVE_PARALLEL_MIN, default 4M: about 100 us on one core), and on the caller's thread
// otherwise.
template <class F>
void parallel_if_worth_it(int64_t tasks, int64_t work, const F& f) {
  static const int64_t parallel_min = env_int("ATTENTIVE_PARALLEL_MIN", int64_t(4) << 20);
  const int threads = at::get_num_threads();
  if (threads < 2 || work < parallel_min || tasks < 2 || at::in_parallel_region()) {
    f(0, tasks);
    return;
  }
  at::parallel_for(0, tasks, (tasks + threads - 1) / threads, f);
}

}  // namespace attentive_cpu
