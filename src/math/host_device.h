// host_device: MNIST_HD marks the formulas that the CPU loops and the CUDA kernels share
// (activation.h, cross_entropy.h, update_rules.h): __host__ __device__ under nvcc, plain inline
// functions everywhere else. These headers include no Torch header, so nvcc sees only them.
#pragma once

#ifdef __CUDACC__
#define MNIST_HD __host__ __device__
#else
#define MNIST_HD
#endif
