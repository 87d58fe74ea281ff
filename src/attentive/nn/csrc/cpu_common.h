// What the CPU kernels share: 16-float vectors and the rule for when a call wakes the threads.
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace attentive_cpu {

// GCC vector extensions of 16 floats: one AVX-512 register, or two AVX2 ones.
typedef float f32x16 __attribute__((vector_size(64)));

inline f32x16 load_f32(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store_f32(float* p, f32x16 v) { std::memcpy(p, &v, sizeof v); }

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
