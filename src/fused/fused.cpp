// fused: forward, softmax cross-entropy and backward of a Dense stack as loops over flat buffers.
#include "fused/fused.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <type_traits>

#include <ATen/Parallel.h>

#include "fused/forward.h"
#include "math/activation.h"
#include "math/cross_entropy.h"
#include "math/simd.h"
#include "model/layers.h"

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

// The weight gradient dW = X^T dZ reads X by input: row k of dW sums dZ's rows i weighted by
// X[i, k], over the samples whose input k is non-zero. So each band regroups a chunk's non-zeros
// by input (a counting sort: input k0 + k's are index/value[start[k] .. start[k + 1]), index being
// the sample's place in the batch, `first` + i for the chunk's sample i, in batch order), from the
// chunk's rows (`rows`: x's rows of samples first .. first + len) cut at band b of `bands`, inputs
// [k0, k1). `by_input` holds the band's inputs + 2 starts and a chunk times its inputs entries.
MNIST_CLONES void group_by_input(const SparseRows& x, const int64_t* rows, int64_t first, int64_t len, int64_t bands, int64_t b,
                                 int64_t k0, int64_t k1, SparseRows& by_input) {
  const int64_t n = k1 - k0;
  int64_t* start = by_input.start.data();
  std::fill(start, start + n + 2, 0);
  const auto run = [&](int64_t i) { return x.cut.data() + rows[i] * (bands + 1) + b; };  // sample i's [begin, end)
  for (int64_t i = 0; i < len; ++i)  // counted at k + 2, so that after the sums below and the moves start[k] ends where k's begin
    for (int64_t e = run(i)[0], end = run(i)[1]; e < end; ++e) ++start[x.index[e] - k0 + 2];
  for (int64_t k = 0; k < n; ++k) start[k + 2] += start[k + 1];
  for (int64_t i = 0; i < len; ++i)
    for (int64_t e = run(i)[0], end = run(i)[1]; e < end; ++e) {
      const int64_t slot = start[x.index[e] - k0 + 1]++;  // moves start[k + 1] from where k's begin to where they end
      by_input.index[slot] = static_cast<int32_t>(first + i);
      by_input.value[slot] = x.value[e];
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

// The optimizer's update of floats [offset, offset + n) of the flat buffers, once their gradients
// are summed (while they are still in the cache).
struct Update {
  const UpdateRule& rule;
  StepRow scalars;
  float *p, *g, *slot_a, *slot_b, *slot_c;
  void operator()(int64_t offset, int64_t n) const { (*this)(offset, n, g + offset); }
  // The same with the gradients of those floats at `grad` instead of in the flat buffer.
  void operator()(int64_t offset, int64_t n, const float* grad) const {
    apply_update(rule, scalars, p + offset, grad, slot_a + offset, slot_b + offset, slot_c + offset, n);
  }
};

// Rows [k0, k1) of dW ([in, out]) from dZ ([len, out]) and a chunk's groups: the chunk's terms
// added to the rows the chunks before summed (`more`), or to zero. After the last chunk
// (`update`, else null) they are updated kUpdateRows rows at a time as soon as they are summed
// (their parameters and slots are still in the L1 cache; one short update per row would spend
// much of its time in the vector loop's tail). Those last sums go to `summed` (kUpdateRows rows,
// staying in L1), not to dw: writing every row of dW out to L2 and reading it back for the update
// cost about 5% of the paper's step. dw holds rows only between the chunks of a large batch.
constexpr int64_t kUpdateRows = 8;
MNIST_CLONES void weight_grad_rows(float* dw, int64_t weight, int64_t out, const float* dz, const SparseRows& by_input, int64_t k0,
                                   int64_t k1, bool more, const Update* update, float* summed) {
  const int64_t* start = by_input.start.data();
  for (int64_t k = k0; k < k1; ++k) {
    const int64_t first = start[k - k0];
    float* row = update ? summed + (k - k0) % kUpdateRows * out : dw + k * out;
    row_combination(row, more ? dw + k * out : nullptr, dz, out, out, by_input.index.data() + first, by_input.value.data() + first,
                    start[k - k0 + 1] - first);
    if (update && ((k + 1 - k0) % kUpdateRows == 0 || k + 1 == k1)) {
      const int64_t rows = (k - k0) % kUpdateRows + 1;
      (*update)(weight + (k + 1 - rows) * out, rows * out, summed);
    }
  }
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

// dA = dZ W^T: each row of dA combines the rows of W^T (`wt`, [out, in]) with weights dZ[i].
MNIST_CLONES void transpose(float* wt, const float* w, int64_t in, int64_t out) {
  for (int64_t k = 0; k < in; ++k)
    for (int64_t j = 0; j < out; ++j) wt[j * in + k] = w[k * out + j];
}
MNIST_CLONES void input_grad_rows(float* da, const float* dz, const float* wt, int64_t in, int64_t out, const int32_t* iota,
                                  int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) row_combination(da + i * in, nullptr, wt, in, in, iota, dz + i * out, out);
}
void input_grad(float* da, const float* dz, const float* w, float* wt, int64_t in, int64_t out, int64_t len, const int32_t* iota) {
  transpose(wt, w, in, out);
  split_rows(len, in * out, [&](int64_t begin, int64_t end) { input_grad_rows(da, dz, wt, in, out, iota, begin, end); });
}

// db = the sum of dZ's rows: a row combination with weights 1.
MNIST_CLONES void bias_grad(float* db, const float* dz, int64_t out, int64_t len, const int32_t* iota, const float* ones) {
  row_combination(db, nullptr, dz, out, out, iota, ones, len);
}

MNIST_CLONES void hidden_forward(float* z, int64_t n, Activation act) { activate_rows(z, n, act); }
MNIST_CLONES void hidden_backward(float* d, const float* a, int64_t n, Activation act) { activation_grad_rows(d, a, n, act); }

// A narrow layer on a hidden layer's outputs A ([len, in], read dense: with one vector per term,
// skipping ReLU's zeros would save less than packing them costs). Forward: samples [begin, end)
// of Z = A W + b, each output summing its inputs in order.
MNIST_CLONES void narrow_forward(float* z, const float* w, const float* bias, const float* a, int64_t in, int64_t out, int64_t begin,
                                 int64_t end) {
  narrow_rows(z, out, bias, w, out, a, /*r_step=*/in, /*e_step=*/1, /*count=*/in, out, begin, end);
}
// Rows [k0, k1) of dW = A^T dZ ([in, out]): row k sums dZ's rows weighted by A[:, k], in batch
// order, and is updated with the rows summed with it.
MNIST_CLONES void narrow_weight_grad(float* dw, int64_t weight, const float* dz, const float* a, int64_t in, int64_t out, int64_t len,
                                     int64_t k0, int64_t k1, const Update& update) {
  for (int64_t k = k0; k < k1; k += kUpdateRows) {
    const int64_t rows = std::min(kUpdateRows, k1 - k);
    narrow_rows(dw, out, nullptr, dz, out, a, /*r_step=*/1, /*e_step=*/in, /*count=*/len, out, k, k + rows);
    update(weight + k * out, rows * out);
  }
}

// Softmax cross-entropy with Keras's label smoothing, mean over the batch (cross_entropy.h):
// replaces the logits by d loss / d logits and returns the summed loss; counts where Keras's
// accuracy finds the label (activation.h's predicted_class on the model's output activation).
float softmax_cross_entropy(float* z, const int64_t* labels, const int64_t* rows, int64_t len, int64_t classes, double smoothing,
                            Activation output, int64_t* correct) {
  const SmoothedTargets targets = smoothed_targets(smoothing, classes);
  const float inv_len = 1.0f / static_cast<float>(len);
  float loss_sum = 0;
  for (int64_t i = 0; i < len; ++i) {
    float* zi = z + i * classes;
    const int64_t y = labels[rows[i]];
    *correct += predicted_class(zi, classes, output) == y;
    loss_sum += softmax_cross_entropy(zi, zi, classes, y, targets, inv_len);
  }
  return loss_sum;
}

}  // namespace

namespace {

// Why the fused loops cannot run `model`'s layers (a Flatten, then Dense layers, no hidden
// softmax); empty when they can. Training (fused_unsupported) and evaluation (fused_logits) ask.
std::string layers_unsupported(const ModelImpl& model) {
  const auto& layers = model.layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& l = *layers[i];
    if (l.type == "Flatten" && i == 0) continue;
    if (l.type != "Dense") return "it covers Flatten and Dense layers only (found " + l.type + ")";
    if (i + 1 < layers.size() && l.activation == Activation::softmax) return "a hidden softmax needs the autograd step";
  }
  if (layers.empty() || layers.back()->type != "Dense") return "the model must end in a Dense layer";
  return "";
}

}  // namespace

std::string fused_unsupported(const Model& model, const TrainingConfig& config, torch::Device device) {
  if (!config.fused) return "training.fused is false";
#ifdef MNIST_WITH_CUDA
  if (!device.is_cpu() && !device.is_cuda()) return "it runs on the CPU and CUDA only";
#else
  if (!device.is_cpu()) return "it runs on the CPU only (this build's Torch has no CUDA)";
#endif
  if (config.augmentation.enabled()) return "augmentation needs the autograd step";
  const bool logits_loss = config.loss.from_logits ? model->output_activation() == Activation::linear
                                                   : config.loss.semantics == LossSemantics::tensorflow;
  if (!logits_loss) return "it implements the softmax cross-entropy on the logits only";
  return layers_unsupported(*model);
}

FusedDenseStep::FusedDenseStep(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config)
    : optimizer_(optimizer), config_(config), output_(accuracy_activation(model->output_activation(), config)) {
  const float* base = optimizer_.flat_params().data_ptr<float>();
  for (const auto& layer : model->layers()) {
    if (layer->type != "Dense") continue;
    Layer l;
    l.activation = layer->activation;
    for (const auto& p : layer->named_parameters(false)) {
      const int64_t offset = p.value().data_ptr<float>() - base;
      if (p.key() == "weight") {
        l.out = p.value().size(0);
        l.in = p.value().size(1);
        l.weight = offset;
      } else {
        l.bias = offset;
      }
    }
    layers_.push_back(l);
  }
}

torch::Tensor FusedDenseStep::to_keras_layout(const torch::Tensor& flat) const {
  torch::Tensor out = flat.clone();
  for (const auto& l : layers_)
    out.narrow(0, l.weight, l.in * l.out).view({l.in, l.out}).copy_(flat.narrow(0, l.weight, l.in * l.out).view({l.out, l.in}).t());
  return out;
}

torch::Tensor FusedDenseStep::to_torch_layout(const torch::Tensor& flat) const {
  torch::Tensor out = flat.clone();
  for (const auto& l : layers_)
    out.narrow(0, l.weight, l.in * l.out).view({l.out, l.in}).copy_(flat.narrow(0, l.weight, l.in * l.out).view({l.in, l.out}).t());
  return out;
}

void FusedDenseStep::begin_epoch(const Split& train) {
  bind(train);
  torch::NoGradGuard no_grad;
  const std::vector<torch::Tensor> slots = optimizer_.state();
  const int64_t n = optimizer_.flat_params().numel();
  if (!params_.defined()) {
    params_ = torch::zeros({n + kSlack}, optimizer_.flat_params().options());
    grads_ = torch::zeros({n}, params_.options());
    for (auto& slot : slots_) slot = torch::zeros({n}, params_.options());
    buffers_allocated();
  }
  params_.narrow(0, 0, n).copy_(to_keras_layout(optimizer_.flat_params()));
  for (size_t k = 0; k < slots_.size(); ++k) slots_[k].copy_(to_keras_layout(slots[k]));
}

void FusedDenseStep::end_epoch() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> slots = optimizer_.state();
  optimizer_.flat_params().copy_(to_torch_layout(params_.narrow(0, 0, grads_.numel())));
  for (size_t k = 0; k < slots_.size(); ++k) slots[k] = to_torch_layout(slots_[k]);
  optimizer_.load_state(slots);
}

namespace {

// The fused step's loops on the CPU (this file's header).
class CpuStep : public FusedDenseStep {
 public:
  CpuStep(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config);
  std::string name() const override { return "fused"; }
  void step(const Batch& batch) override;

 private:
  void bind(const Split& train) override;  // builds the sparse rows of `train.images` once per set
  struct Rows {
    const int64_t* rows;
    int64_t count;
  };
  void prefetch(const Rows& samples) const;
  void forward(size_t l, const int64_t* rows, int64_t len);
  const SparseRows& input(size_t l) const { return l == 0 ? images_ : inputs_[l]; }  // layer l's input rows
  // Which of them are the batch's samples: the batch's rows of the images, a hidden layer's 0 .. len-1.
  const int64_t* input_rows(size_t l, const int64_t* rows) const { return l == 0 ? rows : batch_rows_.data(); }
  bool narrow(size_t l) const { return is_narrow(l, layers_[l].out); }
  // Layer l's bias, input and weight gradients and their updates, from dZ = dz; the first layer's
  // groups of its first chunk already built (`grouped`, see step) or not.
  void backward(size_t l, const float* dz, const int64_t* rows, int64_t len, const Update& update, const Rows& next, bool grouped);
  // The first layer's groups of a batch's first chunk, band by band, each band taken from `next`
  // by whichever thread gets to it first, until none is left.
  void group_first_chunk(std::atomic<int64_t>& next, const int64_t* rows, int64_t len);

  std::vector<std::vector<float>> acts_;  // per layer: [batch, out] outputs (the last: logits, then dlogits)
  std::vector<SparseRows> inputs_;        // per layer but the first: its input activations as sparse rows
  // Per layer, per band of its inputs (the parallel section above): a chunk's non-zeros in the
  // band grouped by input; per layer, the bands' outputs but the first's for a chunk ([bands - 1,
  // chunk, out]) and the work that decides the split.
  std::vector<std::vector<SparseRows>> groups_;
  std::vector<std::vector<std::vector<float>>> summed_;  // per layer, per band: weight_grad_rows's last sums
  std::vector<std::vector<float>> partials_;
  std::vector<int64_t> work_;
  bool overlap_ = true;  // every layer above the first is narrow (step)
  std::vector<float> delta_, delta_in_, wt_;  // backward scratch: dZ of a layer, dA below it, a kernel transposed
  std::vector<int32_t> iota_;                 // 0, 1, 2, ...: the rows of a dense operand, as sparse indices
  std::vector<int64_t> batch_rows_;           // 0 .. batch-1 as int64: a hidden layer's rows
  std::vector<float> ones_;                   // the weights of the bias gradient's sum
  // The bound split (held, so its storage cannot be reused by another split): its labels, and its
  // images as sparse rows.
  torch::Tensor bound_;
  std::vector<int64_t> labels_;
  SparseRows images_;
};

CpuStep::CpuStep(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config)
    : FusedDenseStep(model, optimizer, config) {
  const auto batch = static_cast<size_t>(config.batch_size), chunk = std::min(batch, static_cast<size_t>(kChunk));
  int64_t widest = 0, largest = 0;
  for (const auto& l : layers_) {
    widest = std::max({widest, l.in, l.out});
    largest = std::max(largest, l.in * l.out);
  }
  const auto slack = static_cast<size_t>(kSlack), wide = static_cast<size_t>(widest);
  for (const auto& l : layers_) acts_.emplace_back(batch * static_cast<size_t>(l.out) + slack);
  inputs_.resize(layers_.size());
  groups_.resize(layers_.size());
  summed_.resize(layers_.size());
  partials_.resize(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (narrow(i)) continue;  // reads dense outputs: no sparse rows, bands or groups
    const Layer& l = layers_[i];
    const auto in = static_cast<size_t>(l.in);
    const int64_t bands = band_count(l.in);
    if (i > 0)
      inputs_[i] = {std::vector<int64_t>(batch + 1), std::vector<int32_t>(batch * in), std::vector<float>(batch * in),
                    std::vector<int64_t>(batch * static_cast<size_t>(bands + 1))};
    summed_[i].assign(static_cast<size_t>(bands), std::vector<float>(static_cast<size_t>(kUpdateRows * l.out)));
    for (int64_t b = 0; b < bands; ++b) {
      const auto width = static_cast<size_t>(band_edge(l.in, bands, b + 1) - band_edge(l.in, bands, b));
      groups_[i].push_back({std::vector<int64_t>(width + 2), std::vector<int32_t>(chunk * width), std::vector<float>(chunk * width), {}});
    }
    partials_[i].resize(static_cast<size_t>(bands - 1) * chunk * static_cast<size_t>(l.out));
  }
  work_.resize(layers_.size());
  for (size_t l = 1; l < layers_.size(); ++l) overlap_ = overlap_ && narrow(l);
  delta_.resize(batch * wide + slack);
  delta_in_.resize(batch * wide + slack);
  wt_.resize(static_cast<size_t>(largest) + slack);
  iota_.resize(std::max(batch, wide));
  std::iota(iota_.begin(), iota_.end(), 0);
  batch_rows_.resize(batch);
  std::iota(batch_rows_.begin(), batch_rows_.end(), 0);
  ones_.assign(batch, 1.0f);
}

void CpuStep::bind(const Split& train) {
  if (bound_.defined() && bound_.is_same(train.images)) return;
  const torch::Tensor images = train.images.contiguous().view({train.size(), -1});
  const torch::Tensor labels = train.labels.contiguous();
  const int64_t n = images.size(0), pixels = images.size(1);
  const float* x = images.data_ptr<float>();
  labels_.assign(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + n);
  const size_t nonzero = static_cast<size_t>(std::count_if(x, x + n * pixels, [](float v) { return v != 0; }));
  images_.start.assign(1, 0);
  images_.start.reserve(static_cast<size_t>(n) + 1);
  images_.index.clear();
  images_.index.reserve(nonzero);
  images_.value.clear();
  images_.value.reserve(nonzero);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < pixels; ++k) {
      if (x[i * pixels + k] == 0) continue;
      images_.index.push_back(static_cast<int32_t>(k));
      images_.value.push_back(x[i * pixels + k]);
    }
    images_.start.push_back(static_cast<int64_t>(images_.index.size()));
  }
  const int64_t in = layers_[0].in, bands = band_count(in);  // the first layer's bands
  images_.cut.resize(static_cast<size_t>(n * (bands + 1)));
  for (int64_t i = 0; i < n; ++i) {
    const int32_t* row = images_.index.data() + images_.start[i];
    const int32_t* row_end = images_.index.data() + images_.start[i + 1];
    for (int64_t b = 0; b <= bands; ++b)
      images_.cut[i * (bands + 1) + b] = std::lower_bound(row, row_end, static_cast<int32_t>(band_edge(in, bands, b))) - images_.index.data();
  }
  bound_ = train.images;
}

// Layer l's outputs (a hidden layer's input first packed as sparse rows), chunk by chunk, band by
// band (the parallel section above): each band's share of the chunk's outputs; then the bands'
// sums. A narrow layer reads the layer below's outputs dense, a few samples at a time
// (narrow_forward).
void CpuStep::forward(size_t l, const int64_t* rows, int64_t len) {
  const float* p = params_.data_ptr<float>();
  const Layer& L = layers_[l];
  const bool hidden = l + 1 < layers_.size();
  if (narrow(l)) {
    float* z = acts_[l].data();
    split_rows(len, L.in * L.out, [&](int64_t begin, int64_t end) {
      narrow_forward(z, p + L.weight, L.bias >= 0 ? p + L.bias : nullptr, acts_[l - 1].data(), L.in, L.out, begin, end);
    });
    if (hidden) hidden_forward(z, len * L.out, L.activation);
    return;
  }
  const SparseRows& x = input(l);
  const int64_t* x_rows = input_rows(l, rows);
  const int64_t bands = band_count(L.in);
  if (l > 0) pack_rows(acts_[l - 1].data(), L.in, len, bands, inputs_[l]);
  const int64_t* first_cut = x.cut.data() + x_rows[0] * (bands + 1);
  const int64_t terms = first_cut[bands] - first_cut[0];  // a sample's non-zeros, judged by the first
  work_[l] = std::min(len, kChunk) * std::max<int64_t>(1, terms) * L.out;
  for_each_chunk(len, [&](int64_t first, int64_t n) {
    float* z = acts_[l].data() + first * L.out;
    for_each_band(bands, work_[l], [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const float* init = b == 0 && L.bias >= 0 ? p + L.bias : nullptr;
        band_forward(b == 0 ? z : partials_[l].data() + (b - 1) * n * L.out, p + L.weight, init, L.out, x_rows + first, n, x,
                     bands, b);
      }
    });
    sum_bands(z, partials_[l].data(), bands, n * L.out, hidden, L.activation);
  });
}

// Layer l's parameters, updated as soon as their gradients are summed: the bias, then (after the
// gradient of the layer's input, which reads the weights before their update) the weights, band by
// band, each on the thread that read them in the forward, chunk by chunk (the chunk's non-zeros
// grouped by input, then their terms added to the band's rows of dW; the last chunk's rows updated
// as they are summed). A narrow layer's rows of dW are summed a few at a time from the dense
// outputs below, and updated (narrow_weight_grad).
void CpuStep::backward(size_t l, const float* dz, const int64_t* rows, int64_t len, const Update& update, const Rows& next,
                       bool grouped) {
  const float* p = params_.data_ptr<float>();
  float* g = grads_.data_ptr<float>();
  const Layer& L = layers_[l];
  if (L.bias >= 0) {
    bias_grad(g + L.bias, dz, L.out, len, iota_.data(), ones_.data());
    update(L.bias, L.out);
  }
  if (l > 0) {
    input_grad(delta_in_.data(), dz, p + L.weight, wt_.data(), L.in, L.out, len, iota_.data());
    hidden_backward(delta_in_.data(), acts_[l - 1].data(), len * L.in, layers_[l - 1].activation);
  }
  if (narrow(l)) {
    split_rows(L.in, len * L.out, [&](int64_t k0, int64_t k1) {
      narrow_weight_grad(g + L.weight, L.weight, dz, acts_[l - 1].data(), L.in, L.out, len, k0, k1, update);
    });
    return;
  }
  const int64_t bands = band_count(L.in);
  for_each_band(bands, work_[l], [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t k0 = band_edge(L.in, bands, b), k1 = band_edge(L.in, bands, b + 1);
      SparseRows& groups = groups_[l][static_cast<size_t>(b)];
      for_each_chunk(len, [&](int64_t first, int64_t n) {
        if (!(grouped && first == 0))
          group_by_input(input(l), input_rows(l, rows) + first, first, n, bands, b, k0, k1, groups);
        weight_grad_rows(g + L.weight, L.weight, L.out, dz, groups, k0, k1, /*more=*/first > 0,
                         first + n == len ? &update : nullptr, summed_[l][static_cast<size_t>(b)].data());
      });
    }
    if (l == 0) prefetch(next);  // into each thread's cache: each reads its bands of every row
  });
}

void CpuStep::group_first_chunk(std::atomic<int64_t>& next, const int64_t* rows, int64_t len) {
  const int64_t in = layers_[0].in, bands = band_count(in);
  for (int64_t b = next++; b < bands; b = next++)
    group_by_input(images_, rows, /*first=*/0, std::min(len, kChunk), bands, b, band_edge(in, bands, b), band_edge(in, bands, b + 1),
                   groups_[0][static_cast<size_t>(b)]);
}

// The batches' samples are drawn at random from 60,000 sparse rows (about 1.2 KB each), so the
// rows of a step's batch are rarely in any cache: reading them cost a memory latency every few
// lines, about a fifth of a step. So each step ends by asking the cache of every thread to fetch
// the next batch's rows (order[start + len ..]) and labels (the loss waited for each label in
// turn: half its time); finding the rows reads where their bands begin (SparseRows::cut), which the
// forward reads next. The data read is the same either way. (noipa: GCC finds that a function of
// prefetches changes nothing, and drops its calls.)
__attribute__((noipa)) void CpuStep::prefetch(const Rows& samples) const {
  constexpr int64_t kLine = 64 / sizeof(float);  // floats (and int32 indices) per cache line
  const int64_t cuts = band_count(layers_[0].in) + 1;
  for (int64_t i = 0; i < samples.count; ++i) {
    __builtin_prefetch(labels_.data() + samples.rows[i], /*rw=*/0, /*locality=*/2);
    const int64_t* cut = images_.cut.data() + samples.rows[i] * cuts;
    const int64_t first = cut[0], last = cut[cuts - 1];
    for (int64_t e = first; e < last; e += kLine) {
      __builtin_prefetch(images_.index.data() + e, /*rw=*/0, /*locality=*/2);
      __builtin_prefetch(images_.value.data() + e, /*rw=*/0, /*locality=*/2);
    }
  }
}

// The first layer's forward (on every thread); then, when every layer above it is narrow (the
// paper's model: `overlap_`), one thread runs the layers above, the loss and their backward down to
// the first layer's dZ (about a sixth of a step, on one thread) while another groups the first
// layer's inputs by band, which needs only the forward, and the first joins it when done; then the
// first layer's weight gradients on every thread. Who groups a band changes nothing in the groups.
void CpuStep::step(const Batch& b) {
  const int64_t* rows = b.order.data_ptr<int64_t>() + b.start;
  const float* row = b.table.data_ptr<float>() + 2 * b.step;
  // The update is elementwise, so updating each row where its gradient is summed, on whichever
  // thread sums it, gives the bits of one pass over the buffers.
  const Update update{optimizer_.rule(), StepRow{row[0], row[1]}, params_.data_ptr<float>(), grads_.data_ptr<float>(),
                      slots_[0].data_ptr<float>(), slots_[1].data_ptr<float>(), slots_[2].data_ptr<float>()};
  const Rows next{rows + b.len, std::min(b.len, b.order.numel() - b.start - b.len)};
  forward(0, rows, b.len);
  const float* dz = acts_.back().data();  // the loss writes d loss / d logits over the logits
  const auto above_first = [&] {
    for (size_t l = 1; l < layers_.size(); ++l) forward(l, rows, b.len);
    const Layer& last = layers_.back();
    *b.loss_sum.data_ptr<float>() += softmax_cross_entropy(acts_.back().data(), labels_.data(), rows, b.len, last.out,
                                                           config_.loss.label_smoothing, output_, b.correct.data_ptr<int64_t>());
    for (size_t l = layers_.size(); l-- > 1;) {
      backward(l, dz, rows, b.len, update, next, /*grouped=*/false);
      std::swap(delta_, delta_in_);
      dz = delta_.data();
    }
  };
  if (overlap_) {
    std::atomic<int64_t> next_band{0};
    at::parallel_for(0, 2, /*grain_size=*/work_[0] >= kMinWork ? 1 : 2, [&](int64_t begin, int64_t end) {
      for (int64_t part = begin; part < end; ++part) {
        if (part == 0) above_first();
        group_first_chunk(next_band, rows, b.len);
      }
    });
  } else {
    above_first();
  }
  backward(0, dz, rows, b.len, update, next, /*grouped=*/overlap_);
}

}  // namespace

// The step's forward (CpuStep::forward) on samples instead of a batch: each thread takes a range
// of samples, kPiece at a time, packs their inputs as sparse rows and runs every layer on them
// with the same bands and loops. Each sample's sums are its own, whatever the range it falls in.
torch::Tensor fused_logits(const ModelImpl& model, const torch::Tensor& x) {
  constexpr int64_t kPiece = 32;  // samples per pass through the layers: their outputs stay in L1/L2
  if (!x.device().is_cpu() || x.scalar_type() != torch::kFloat || !layers_unsupported(model).empty()) return {};
  struct Dense {
    std::vector<float> w, bias;  // [in, out] (Keras's layout) and [out], each followed by kSlack zeros; bias empty: none
    int64_t in = 0, out = 0;
    Activation activation = Activation::linear;
  };
  std::vector<Dense> dense;
  torch::NoGradGuard no_grad;
  for (const auto& layer : model.layers()) {
    if (layer->type != "Dense") continue;  // the Flatten: the images are read flat
    Dense d;
    d.activation = layer->activation;
    for (const auto& p : layer->named_parameters(false)) {
      const torch::Tensor v = p.value();
      if (!v.device().is_cpu() || v.scalar_type() != torch::kFloat) return {};
      const torch::Tensor keras = (p.key() == "weight" ? v.t() : v).contiguous();
      std::vector<float>& to = p.key() == "weight" ? d.w : d.bias;
      to.assign(keras.data_ptr<float>(), keras.data_ptr<float>() + keras.numel());
      to.resize(to.size() + FusedDenseStep::kSlack, 0.0f);
      if (p.key() == "weight") d.out = v.size(0), d.in = v.size(1);
    }
    dense.push_back(std::move(d));
  }
  const torch::Tensor images = x.contiguous().view({x.size(0), -1});
  const int64_t n = images.size(0), classes = dense.back().out;
  if (images.size(1) != dense[0].in) return {};
  torch::Tensor logits = torch::empty({n, classes}, images.options());
  const float* pixels = images.data_ptr<float>();
  float* out = logits.data_ptr<float>();
  int64_t widest = 0;
  for (const Dense& d : dense) widest = std::max({widest, d.in, d.out});
  at::parallel_for(0, n, /*grain_size=*/kPiece, [&](int64_t begin, int64_t end) {
    const auto piece = static_cast<size_t>(kPiece), wide = static_cast<size_t>(widest), slack = static_cast<size_t>(FusedDenseStep::kSlack);
    const auto cuts = static_cast<size_t>(kBands + 1);
    SparseRows rows{std::vector<int64_t>(piece + 1), std::vector<int32_t>(piece * wide), std::vector<float>(piece * wide),
                    std::vector<int64_t>(piece * cuts)};
    std::vector<float> below(piece * wide + slack), above(piece * wide + slack), partials(static_cast<size_t>(kBands - 1) * piece * wide);
    std::vector<int64_t> samples(piece);
    std::iota(samples.begin(), samples.end(), 0);
    for (int64_t first = begin; first < end; first += kPiece) {
      const int64_t len = std::min(kPiece, end - first);
      const float* a = pixels + first * dense[0].in;  // the layer's input, [len, in]
      for (size_t l = 0; l < dense.size(); ++l) {
        const Dense& d = dense[l];
        const bool hidden = l + 1 < dense.size();
        float* z = hidden ? (a == below.data() ? above.data() : below.data()) : out + first * classes;
        const float* bias = d.bias.empty() ? nullptr : d.bias.data();
        if (is_narrow(l, d.out)) {
          narrow_forward(z, d.w.data(), bias, a, d.in, d.out, /*begin=*/0, /*end=*/len);
          if (hidden) hidden_forward(z, len * d.out, d.activation);
        } else {
          const int64_t bands = band_count(d.in);
          pack_rows(a, d.in, len, bands, rows);
          for (int64_t b = 0; b < bands; ++b)
            band_forward(b == 0 ? z : partials.data() + (b - 1) * len * d.out, d.w.data(), b == 0 ? bias : nullptr, d.out,
                         samples.data(), len, rows, bands, b);
          sum_bands(z, partials.data(), bands, len * d.out, hidden, d.activation);
        }
        a = z;
      }
    }
  });
  return logits;
}

std::unique_ptr<TrainingStep> make_cpu_step(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config) {
  return std::make_unique<CpuStep>(model, optimizer, config);
}

}  // namespace mnist
