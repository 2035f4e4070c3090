// cpu_loops: the loops of a Dense stack on the CPU that the fused step (cpu_step.cpp) and the
// evaluation forward (forward.cpp) both run: sparse rows and their bands, register tiles of
// weight rows, the weight and input gradients, softmax cross-entropy. File-local to each of those
// two files (internal linkage: each compiles its own copies, with its own SIMD clones).
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <type_traits>
#include <vector>

#include <ATen/Parallel.h>

#include "fused/fused.h"
#include "math/activation.h"
#include "math/cross_entropy.h"
#include "math/simd.h"

namespace mnist {
namespace {

// A batch of sparse rows (compressed sparse rows): row r's non-zero entries are
// index/value[start[r] .. start[r + 1]), in increasing index. As the input of a layer cut in
// `bands` bands (below), row r's entries in band b are [cut[r * (bands + 1) + b], cut[r * (bands
// + 1) + b + 1]), so that a band finds its run of each row without searching for it.
struct SparseRows {
  std::vector<int64_t> start;
  std::vector<int32_t> index;
  std::vector<float> value;
  std::vector<int64_t> cut;
};


// a = f(z) over a row, and dA -> dZ in place from the outputs A: activation.h's formulas, one loop
// per activation.
MNIST_INLINE void activate_rows(float* z, int64_t n, Activation a) {
  with_activation(a, [&](auto act) {
    for (int64_t j = 0; j < n; ++j) z[j] = activate<decltype(act)::value>(z[j]);
  });
}
MNIST_INLINE void activation_grad_rows(float* __restrict d, const float* __restrict a, int64_t n, Activation act) {
  with_activation(act, [&](auto constant) {
    for (int64_t j = 0; j < n; ++j) d[j] = activation_grad<decltype(constant)::value>(d[j], a[j]);
  });
}

// Every loop below but the activations and the loss is one pattern: an output row that is a
// weighted sum of rows of a matrix,
//     out[0..n) = init[0..n) (or 0) + sum over e of value[e] * w[index[e] * ld + 0..n).
// The row is built in tiles of 16-float vectors held in registers across all the terms, then
// stored once (GCC's vector extension: one AVX-512 register, two AVX2 or four SSE2 ones per
// vector); accumulating in memory would cost a load and a store of the row per term. Each output
// sums its terms in index order, whatever the tiling.
//
// A row's last vector is loaded whole even where the row ends inside it (n = 100 is 6 vectors and
// 4 lanes): its lanes past n read the next row or kSlack floats of zeros at the end of the buffer,
// are summed like the others and never stored (a scalar loop for those tails, loading and storing
// the output per term, made the paper model's epoch take about half again as long).
typedef float vec16 __attribute__((vector_size(64), aligned(4)));  // aligned(4): loads from any float
constexpr int64_t kLanes = 16;
static_assert(FusedDenseStep::kSlack >= kLanes, "zeros at the end of every buffer read as whole vectors");

template <int Vectors>
MNIST_INLINE void row_tile(float* out, const float* init, const float* w, int64_t ld, const int32_t* index, const float* value,
                           int64_t count, int64_t last_lanes) {
  vec16 acc[Vectors];
  for (int t = 0; t < Vectors; ++t) acc[t] = init ? reinterpret_cast<const vec16*>(init)[t] : vec16{};
  for (int64_t e = 0; e < count; ++e) {
    const float v = value[e];
    const vec16* wr = reinterpret_cast<const vec16*>(w + index[e] * ld);
    for (int t = 0; t < Vectors; ++t) acc[t] += v * wr[t];
  }
  for (int t = 0; t + 1 < Vectors; ++t) reinterpret_cast<vec16*>(out)[t] = acc[t];
  float* tail = out + (Vectors - 1) * kLanes;
  if (last_lanes == kLanes)
    *reinterpret_cast<vec16*>(tail) = acc[Vectors - 1];
  else
    for (int64_t l = 0; l < last_lanes; ++l) tail[l] = acc[Vectors - 1][l];
}

// The widest tile is as many vectors as the registers hold with room for the loads: 8 with
// AVX-512's 32 registers (a 100-unit row is then one pass over its terms instead of two), 4 else.
MNIST_INLINE int widest_tile() {
#if defined(__GNUC__) && defined(__x86_64__)
  static const int vectors = __builtin_cpu_supports("avx512f") ? 8 : 4;
  return vectors;
#else
  return 4;
#endif
}

// Calls tile(j, last_lanes, std::integral_constant<int, V>{}) for the tiles that cover columns
// [0, n): V vectors from column j, the last of them with last_lanes lanes in [0, n).
template <typename Tile>
MNIST_INLINE void for_each_tile(int64_t n, const Tile& tile) {
  const int64_t widest = widest_tile() * kLanes;
  for (int64_t j = 0; j < n; j += widest) {
    const int64_t width = std::min(widest, n - j), last = width - (width - 1) / kLanes * kLanes;
    switch ((width + kLanes - 1) / kLanes) {
      case 1: tile(j, last, std::integral_constant<int, 1>{}); break;
      case 2: tile(j, last, std::integral_constant<int, 2>{}); break;
      case 3: tile(j, last, std::integral_constant<int, 3>{}); break;
      case 4: tile(j, last, std::integral_constant<int, 4>{}); break;
      case 5: tile(j, last, std::integral_constant<int, 5>{}); break;
      case 6: tile(j, last, std::integral_constant<int, 6>{}); break;
      case 7: tile(j, last, std::integral_constant<int, 7>{}); break;
      default: tile(j, last, std::integral_constant<int, 8>{}); break;
    }
  }
}

MNIST_INLINE void row_combination(float* out, const float* init, const float* w, int64_t ld, int64_t n, const int32_t* index,
                                  const float* value, int64_t count) {
  for_each_tile(n, [&](int64_t j, int64_t last, auto vectors) {
    row_tile<decltype(vectors)::value>(out + j, init ? init + j : nullptr, w + j, ld, index, value, count, last);
  });
}

// A narrow layer (at most one vector of outputs: the classifier's 10 units) makes row
// combinations of a single vector: one chain of dependent multiply-adds, a few cycles each, where
// the wide rows above keep the unit busy with a vector per accumulator. So several of its rows
// are built together, each its own chain, from the same rows of w with values of their own:
//     out[r * ld_out + 0..n) = init[0..n) (or 0) + sum over e < count of value[r * r_step + e * e_step] * w[e * ld + 0..n)
// for r < Rows, each summed in e's order (the same order as a row combination of those terms).
template <int Rows>
MNIST_INLINE void narrow_tile(float* out, int64_t ld_out, const float* init, const float* w, int64_t ld, const float* value,
                              int64_t r_step, int64_t e_step, int64_t count, int64_t n) {
  vec16 acc[Rows];
  for (int r = 0; r < Rows; ++r) acc[r] = init ? *reinterpret_cast<const vec16*>(init) : vec16{};
  for (int64_t e = 0; e < count; ++e) {
    const vec16 we = *reinterpret_cast<const vec16*>(w + e * ld);
    for (int r = 0; r < Rows; ++r) acc[r] += value[r * r_step + e * e_step] * we;
  }
  for (int r = 0; r < Rows; ++r)
    for (int64_t l = 0; l < n; ++l) out[r * ld_out + l] = acc[r][l];
}

// Rows [begin, end) of such a combination (row r's values from value + r * r_step), in tiles of
// as many rows as there are accumulators to spare (widest_tile()).
MNIST_INLINE void narrow_rows(float* out, int64_t ld_out, const float* init, const float* w, int64_t ld, const float* value,
                              int64_t r_step, int64_t e_step, int64_t count, int64_t n, int64_t begin, int64_t end) {
  const int64_t tile = widest_tile();
  for (int64_t r = begin; r < end; r += tile) {
    float* o = out + r * ld_out;
    const float* v = value + r * r_step;
    switch (std::min(tile, end - r)) {
      case 1: narrow_tile<1>(o, ld_out, init, w, ld, v, r_step, e_step, count, n); break;
      case 2: narrow_tile<2>(o, ld_out, init, w, ld, v, r_step, e_step, count, n); break;
      case 3: narrow_tile<3>(o, ld_out, init, w, ld, v, r_step, e_step, count, n); break;
      case 4: narrow_tile<4>(o, ld_out, init, w, ld, v, r_step, e_step, count, n); break;
      case 5: narrow_tile<5>(o, ld_out, init, w, ld, v, r_step, e_step, count, n); break;
      case 6: narrow_tile<6>(o, ld_out, init, w, ld, v, r_step, e_step, count, n); break;
      case 7: narrow_tile<7>(o, ld_out, init, w, ld, v, r_step, e_step, count, n); break;
      default: narrow_tile<8>(o, ld_out, init, w, ld, v, r_step, e_step, count, n); break;
    }
  }
}

// Layer l (counting Dense layers from 0) with `out` units is narrow (narrow_tile): above the
// first, at most one vector wide, and it reads the layer below's outputs dense, not as sparse rows.
bool is_narrow(size_t l, int64_t out) { return l > 0 && out <= kLanes; }

// Both cores. A layer's inputs are cut in bands (kBands of them when it has at least kBandInputs
// inputs, else one), and each band is one thread's work in the forward and in the backward:
//  - forward: the band's share of every sample's output, Z_b = X[:, band] W[band, :] (band 0 adds
//    the bias); the layer's outputs are then Z_0 + Z_1 + ... in band order;
//  - backward: the rows of dW in the band, each updated by the optimizer as soon as it is summed.
// So the rows of W (and of its gradient and optimizer slots) a thread updates are the only ones it
// reads: they stay in its core's cache from step to step, instead of crossing between cores twice
// a step (which made two threads train the paper's model only 1.2x as fast as one). The bands are
// fixed by the layer's shape, and each band is computed whole by one thread in the same order, so
// a run trains the same bits whatever the thread count (1, 2 or 4 threads share 4 bands evenly).
// A split costs a few microseconds, so a layer with fewer than kMinWork multiply-adds runs its
// bands on one thread (at batch 32, the paper's first layer is split, its second is not).
constexpr int64_t kBands = 4, kBandInputs = 256, kMinWork = 32768;
int64_t band_count(int64_t in) { return in >= kBandInputs ? kBands : 1; }
// A large batch is worked through kChunk samples at a time, forward and backward: a chunk's
// outputs, the bands' partial sums, its non-zeros grouped by input and its rows of dZ stay in L2
// (at batch 4096 the whole batch's would not: an epoch took 1.3-1.8x as long).
// Each output and each row of dW still sums its terms in the same order, so the bits are the
// same whatever the chunk size.
constexpr int64_t kChunk = 512;
// Calls body(first, n) on the chunks [first, first + n) of a batch of len samples, in order.
template <typename Body>
void for_each_chunk(int64_t len, const Body& body) {
  for (int64_t first = 0; first < len; first += kChunk) body(first, std::min(kChunk, len - first));
}
// Band b is inputs [band_edge(b), band_edge(b + 1)): cut at multiples of 16 inputs, so that
// no cache line of W holds rows of two bands (16 rows of any width are whole cache lines).
int64_t band_edge(int64_t in, int64_t bands, int64_t b) { return b == bands ? in : b * in / bands / 16 * 16; }

// Calls body(begin, end) on the bands [begin, end) of each thread, on the intra-op threads when
// the work is worth a split (the same bands for the same thread in every call).
template <typename Body>
void for_each_band(int64_t bands, int64_t work, const Body& body) {
  at::parallel_for(0, bands, /*grain_size=*/work >= kMinWork ? 1 : bands, body);
}

// Calls body(begin, end) on pieces of [0, n), rows of about `work_per_row` multiply-adds each.
template <typename Body>
void split_rows(int64_t n, int64_t work_per_row, const Body& body) {
  at::parallel_for(0, n, std::max<int64_t>(1, kMinWork / std::max<int64_t>(1, work_per_row)), body);
}

// One band's forward, Z_b = init + X[:, band] W[band, :] for a batch whose inputs X are sparse
// rows (the images' non-zero pixels, or a hidden layer's non-zero activations: ReLU's zeros are
// skipped like the pixels), with init the bias (band 0) or zeros. A sample's non-zeros are sorted by
// input, so its band b is one run of them (SparseRows::cut).
MNIST_CLONES void band_forward(float* z, const float* w, const float* init, int64_t out, const int64_t* rows, int64_t len,
                               const SparseRows& x, int64_t bands, int64_t b) {
  for (int64_t i = 0; i < len; ++i) {
    const int64_t* run = x.cut.data() + rows[i] * (bands + 1) + b;
    row_combination(z + i * out, init, w, out, out, x.index.data() + run[0], x.value.data() + run[0], run[1] - run[0]);
  }
}

// Z = Z_0 + Z_1 + ... in band order ([len, out] each), then a hidden layer's activation.
MNIST_CLONES void sum_bands(float* z, const float* partials, int64_t bands, int64_t n, bool hidden, Activation act) {
  for (int64_t b = 1; b < bands; ++b) {
    const float* p = partials + (b - 1) * n;
    for (int64_t j = 0; j < n; ++j) z[j] += p[j];
  }
  if (hidden) activate_rows(z, n, act);
}

// A hidden layer's activations [len, n] as sparse rows 0..len-1 cut in `bands` bands, without a
// branch per entry (ReLU's zeros fall where no branch predictor can guess them).
MNIST_CLONES void pack_rows(const float* a, int64_t n, int64_t len, int64_t bands, SparseRows& x) {
  int64_t count = 0;
  x.start[0] = 0;
  for (int64_t i = 0; i < len; ++i) {
    for (int64_t b = 0; b < bands; ++b) {
      x.cut[i * (bands + 1) + b] = count;
      for (int64_t k = band_edge(n, bands, b); k < band_edge(n, bands, b + 1); ++k) {
        const float v = a[i * n + k];
        x.index[count] = static_cast<int32_t>(k);
        x.value[count] = v;
        count += v != 0;
      }
    }
    x.cut[i * (bands + 1) + bands] = count;
    x.start[i + 1] = count;
  }
}

MNIST_CLONES void hidden_forward(float* z, int64_t n, Activation act) { activate_rows(z, n, act); }

// A narrow layer on a hidden layer's outputs A ([len, in], read dense: with one vector per term,
// skipping ReLU's zeros would save less than packing them costs). Forward: samples [begin, end)
// of Z = A W + b, each output summing its inputs in order.
MNIST_CLONES void narrow_forward(float* z, const float* w, const float* bias, const float* a, int64_t in, int64_t out, int64_t begin,
                                 int64_t end) {
  narrow_rows(z, out, bias, w, out, a, /*r_step=*/in, /*e_step=*/1, /*count=*/in, out, begin, end);
}

// A Dense layer as the forward reads it: weights [in, out] (Keras's layout) and bias [out] (null: none).
struct DenseWeights {
  const float* weight;
  const float* bias;
  int64_t in, out;
  Activation activation;
};

// A layer's input: the sparse rows `rows[0 .. len)` of `x`; or, where `dense` is set, the layer
// below's outputs [len, in], which a narrow layer reads as they are and a wide one packs into `x`
// first (then `rows` is 0, 1, ..., len - 1).
struct LayerInput {
  const float* dense;
  SparseRows* x;
  const int64_t* rows;
};

// Layer l's forward on `len` samples (l counts Dense layers from 0; hidden: not the last), the one
// forward that training (a batch) and evaluation (a piece of samples on each thread) both run:
//     Z [len, out] = A [len, in] W [in, out] + b, then a hidden layer's activation.
// A narrow layer reads A dense, a few samples at a time; a wide one reads A's sparse rows kChunk
// samples at a time, band by band (`partials`: the bands but the first's sums, [bands - 1,
// min(len, kChunk), out]), then adds the bands. Samples and bands go to the intra-op threads when
// the work is worth a split; called inside a parallel section (evaluation), they run on its
// thread. Either way each output sums its terms in one order. Returns a chunk's work, by which
// the backward splits the same bands (0 for a narrow layer).
MNIST_INLINE int64_t dense_forward(size_t l, bool hidden, const DenseWeights& L, const LayerInput& a, int64_t len, float* z,
                                   float* partials) {
  if (is_narrow(l, L.out)) {
    split_rows(len, L.in * L.out, [&](int64_t begin, int64_t end) {
      narrow_forward(z, L.weight, L.bias, a.dense, L.in, L.out, begin, end);
    });
    if (hidden) hidden_forward(z, len * L.out, L.activation);
    return 0;
  }
  const int64_t bands = band_count(L.in);
  if (a.dense) pack_rows(a.dense, L.in, len, bands, *a.x);
  const int64_t* first_cut = a.x->cut.data() + a.rows[0] * (bands + 1);
  const int64_t terms = first_cut[bands] - first_cut[0];  // a sample's non-zeros, judged by the first
  const int64_t work = std::min(len, kChunk) * std::max<int64_t>(1, terms) * L.out;
  for_each_chunk(len, [&](int64_t first, int64_t n) {
    float* zc = z + first * L.out;
    for_each_band(bands, work, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        band_forward(b == 0 ? zc : partials + (b - 1) * n * L.out, L.weight, b == 0 ? L.bias : nullptr, L.out, a.rows + first, n,
                     *a.x, bands, b);
    });
    sum_bands(zc, partials, bands, n * L.out, hidden, L.activation);
  });
  return work;
}


}  // namespace
}  // namespace mnist
