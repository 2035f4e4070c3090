// cpu_step (compiled within cpu.cpp): the fused step on the CPU (fused.h): forward, softmax
// cross-entropy, backward and the update of a Dense stack as loops over the batch's sparse rows
// (cpu_loops.h; the backward's below), on bands of the inputs split across threads.
#include "fused/cpu_loops.h"
#include "fused/fused.h"

namespace mnist {
namespace {

// ---- the backward loops (the forward's are cpu_loops.h) ----

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

MNIST_CLONES void hidden_backward(float* d, const float* a, int64_t n, Activation act) { activation_grad_rows(d, a, n, act); }

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

// ---- the step ----

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

// Layer l's outputs on the batch (cpu_loops.h dense_forward): the first reads the images' sparse
// rows, a layer above the outputs of the one below.
void CpuStep::forward(size_t l, const int64_t* rows, int64_t len) {
  const float* p = params_.data_ptr<float>();
  const Layer& L = layers_[l];
  const DenseWeights weights{p + L.weight, L.bias >= 0 ? p + L.bias : nullptr, L.in, L.out, L.activation};
  const LayerInput input = l == 0 ? LayerInput{nullptr, &images_, rows} : LayerInput{acts_[l - 1].data(), &inputs_[l], batch_rows_.data()};
  work_[l] = dense_forward(l, /*hidden=*/l + 1 < layers_.size(), weights, input, len, acts_[l].data(), partials_[l].data());
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

std::unique_ptr<TrainingStep> make_cpu_step(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config) {
  return std::make_unique<CpuStep>(model, optimizer, config);
}

}  // namespace mnist
