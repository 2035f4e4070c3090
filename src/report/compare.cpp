// compare: run records, the comparison table and the overlay chart.
#include "report/compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "config/user_input.h"

namespace mnist {
namespace {
namespace fs = std::filesystem;


std::string cell(std::optional<double> v, const char* fmt) {
  if (!v) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, fmt, *v);
  return buf;
}

std::optional<double> last(const std::vector<double>& v) { return v.empty() ? std::nullopt : std::optional<double>(v.back()); }
std::optional<double> best(const std::vector<double>& v) {  // of the finite values (a diverged epoch is NaN)
  std::optional<double> out;
  for (const double x : v)
    if (std::isfinite(x) && (!out || x > *out)) out = x;
  return out;
}
std::optional<double> median(std::vector<double> v) {
  if (v.empty()) return std::nullopt;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

RunRecord load_run_record(const std::string& path_arg) {
  const fs::path path(path_arg);
  RunRecord r;
  if (fs::is_directory(path)) {
    const fs::path history = path / "history.json";
    if (!fs::exists(history)) throw std::runtime_error(path.string() + " is not a run directory (no history.json)");
    r.name = fs::weakly_canonical(path).filename().string();  // runs/latest is named for the run it links to
    r.history = History::from_json(read_json_file(history, /*max_depth=*/16, /*python_non_finite=*/true), history.string());
    if (fs::exists(path / "metrics.json")) {
      const auto m = read_json_file(path / "metrics.json", /*max_depth=*/16);
      if (m.contains("test_accuracy") && m["test_accuracy"].is_number()) r.test_accuracy = m["test_accuracy"].get<double>();
      if (m.contains("test_loss") && m["test_loss"].is_number()) r.test_loss = m["test_loss"].get<double>();
    }
  } else if (fs::exists(path)) {
    r.name = path.stem().string();
    r.history = History::from_json(read_json_file(path, /*max_depth=*/16, /*python_non_finite=*/true), path.string());
    r.test_accuracy = last(r.history.test_accuracy);  // per-epoch test keys, as scripts/keras_reference.py writes
    r.test_loss = last(r.history.test_loss);
  } else {
    throw std::runtime_error(path.string() + " does not exist: pass run directories or Keras History JSON files");
  }
  return r;
}

std::string comparison_table(const std::vector<RunRecord>& runs) {
  // Which set each column is: training (the running mean Keras reports), a validation split (ours when
  // the run has one: without, our val_* is the test set, shown under test), the test set.
  const std::vector<std::string> header = {"run", "epochs", "train acc", "best train acc", "val acc", "test acc", "test loss", "train loss", "s/epoch"};
  std::vector<std::vector<std::string>> rows = {header};
  for (const auto& r : runs) {
    const History& h = r.history;
    rows.push_back({printable(r.name), std::to_string(std::max(h.accuracy.size(), h.loss.size())), cell(last(h.accuracy), "%.4f"),
                    cell(best(h.accuracy), "%.4f"), cell(h.val_accuracy == h.test_accuracy ? std::nullopt : last(h.val_accuracy), "%.4f"), cell(r.test_accuracy, "%.4f"),
                    cell(r.test_loss, "%.4f"), cell(last(h.loss), "%.4f"), cell(median(h.epoch_seconds), "%.3f")});
  }
  std::vector<size_t> width(header.size(), 0);
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  std::ostringstream out;
  for (size_t i = 0; i < rows.size(); ++i) {
    for (size_t c = 0; c < rows[i].size(); ++c) {
      const std::string& s = rows[i][c];
      const std::string pad(width[c] - s.size(), ' ');
      out << (c == 0 ? s + pad : "  " + pad + s);  // names left-aligned, numbers right-aligned
    }
    out << "\n";
    if (i == 0) {
      size_t total = 0;
      for (size_t w : width) total += w + 2;
      out << std::string(total - 2, '-') << "\n";
    }
  }
  return out.str();
}

#ifdef MNIST_WITH_OPENCV
namespace {

// One run's curves of accuracy or loss: training solid, a validation split dashed, the test set
// dotted (our val_* is the test set when the run has no split: drawn once, as test). Each run has its
// colour and is drawn over the runs before it, narrower and translucent, so identical curves (ours
// beside Keras's) both show. With many runs only the training curve names its run.
void add_run_series(std::vector<Series>& out, const RunRecord& r, size_t i, size_t runs, bool accuracy) {
  const History& h = r.history;
  const bool val_is_test = h.val_loss == h.test_loss && h.val_accuracy == h.test_accuracy;
  const std::vector<double>& train = accuracy ? h.accuracy : h.loss;
  const std::vector<double>& validation = accuracy ? h.val_accuracy : h.val_loss;
  const std::vector<double>& test = accuracy ? h.test_accuracy : h.test_loss;
  const bool name_each = runs <= 4;
  // Up to four runs, each curve 2 pixels wider than the next run's, which is drawn over it: identical
  // curves show as nested bands.
  const int color = static_cast<int>(i), width = runs <= 4 ? 2 + 2 * static_cast<int>(runs - 1 - i) : 2;
  const double opacity = runs > 1 ? 0.8 : 1.0;
  auto add = [&](const std::string& set, const std::vector<double>& values, bool dashed, bool dotted) {
    if (values.empty()) return;
    const std::string label = name_each ? r.name + " " + set : set == "training" ? r.name : "";
    out.push_back({label, values, color, dashed, dotted, width, opacity});
  };
  add("training", train, false, false);
  if (!val_is_test) add("validation", validation, true, false);
  add("test", test.empty() && val_is_test ? validation : test, false, true);
}

}  // namespace

std::vector<Figure> comparison_panels(const std::vector<RunRecord>& runs) {
  std::vector<Series> accuracy, loss;
  for (size_t i = 0; i < runs.size(); ++i) {
    add_run_series(accuracy, runs[i], i, runs.size(), true);
    add_run_series(loss, runs[i], i, runs.size(), false);
  }
  const std::string key = "solid: training (running mean), dashed: validation, dotted: test";
  return {plot_curves("Accuracy per epoch (" + key + ")", "Accuracy", accuracy, true),
          plot_curves("Loss per epoch (" + key + ")", "Loss", loss, false)};
}

Figure comparison_chart(const std::vector<RunRecord>& runs) {
  const std::vector<Figure> panels = comparison_panels(runs);
  Figure out(panels[0].image.cols, panels[0].image.rows + panels[1].image.rows);
  cv::vconcat(panels[0].image, panels[1].image, out.image);
  out.text_boxes = panels[0].text_boxes;
  for (cv::Rect box : panels[1].text_boxes) out.text_boxes.push_back(box + cv::Point(0, panels[0].image.rows));
  return out;
}
#endif

}  // namespace mnist
