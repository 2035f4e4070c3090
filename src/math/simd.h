// simd: how the hand-written CPU loops (fused.cpp, optim.cpp) get vector code on every x86-64.
//
// The build targets baseline x86-64 (SSE2), so that one binary runs on any machine. MNIST_CLONES
// compiles a function once per instruction set and picks one when the program loads (GCC's
// target_clones): AVX-512 (x86-64-v4), AVX2 + FMA (x86-64-v3), or the baseline. Helpers marked
// MNIST_INLINE are inlined into each clone, so they are vectorised for its instruction set too.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define MNIST_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MNIST_CLONES
#endif
#define MNIST_INLINE static inline __attribute__((always_inline))
