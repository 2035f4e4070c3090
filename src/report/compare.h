// compare: lays runs side by side. Each input is one of our run directories or a Keras History
// JSON file (model.fit(...).history saved with json.dump, NaN and Infinity included), so a LibTorch run
// can be put beside the Keras run it reproduces: one table of final/best figures and one chart.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "train/history.h"
#ifdef MNIST_WITH_OPENCV
#include "report/plot.h"
#endif

namespace mnist {

struct RunRecord {
  std::string name;   // directory or file name
  History history;
  std::optional<double> test_accuracy, test_loss;  // from metrics.json, for our runs
  // A group (a `train --seeds` folder): `history` holds the seeds' per-epoch means, `spread` their
  // sample standard deviations, and test_* the means of their final figures.
  int seeds = 0;
  History spread;
  std::optional<double> test_accuracy_sd, test_loss_sd;
};

// A run directory, a `train --seeds` folder (with seeds.json: a group) or a History file; throws
// std::runtime_error naming the path.
RunRecord load_run_record(const std::string& path);

// Plain-text table: final and best training accuracy, final validation accuracy (a split of its own), test accuracy and loss,
// final training loss, median seconds per epoch; "-" where an input lacks the figure.
std::string comparison_table(const std::vector<RunRecord>& runs);

#ifdef MNIST_WITH_OPENCV
// Two panels, accuracy and loss per epoch: every run's training (solid), validation (dashed) and test
// (dotted) curves, one colour per run; non-finite values (a diverged epoch) are gaps.
std::vector<Figure> comparison_panels(const std::vector<RunRecord>& runs);
// The panels one above the other: what `compare --out` writes.
Figure comparison_chart(const std::vector<RunRecord>& runs);
#endif

}  // namespace mnist
