// float_env: the CPU floating-point environment that training and evaluation run in.
//
// TensorFlow runs every CPU kernel with denormal floats flushed to zero: both as results (FTZ) and
// as inputs (DAZ), around each op and in its thread pools (tsl::port::ScopedFlushDenormal), and
// XLA's CPU client does the same. So Keras on TensorFlow trains the paper's model with every value
// below 1.2e-38 taken as 0, and so do we. It matters for speed too: Adam's moments and the
// gradients of rarely active weights decay into that range, and arithmetic on denormals costs
// tens of cycles per operation (without flushing, the paper's epoch slows from 0.2 s to 0.7 s over
// a 100-epoch run).
#pragma once

namespace mnist {

// While alive: denormals flushed to zero on this thread and on every LibTorch intra-op thread
// (the fused step's and ATen's workers). On destruction every one of them returns to the state
// this thread had before. A no-op where the CPU has no such mode (non-x86).
class FlushDenormals {
 public:
  FlushDenormals();
  ~FlushDenormals();
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  unsigned int saved_ = 0;
};

}  // namespace mnist
