// compare: run records, the comparison table and the overlay chart.
#include "report/compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

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

namespace {

// The mean and sample standard deviation of the finite values of `v` (NaN, NaN for none).
std::pair<double, double> mean_sd(const std::vector<double>& v) {
  double n = 0, mean = 0, ss = 0;
  for (const double x : v)
    if (std::isfinite(x)) n += 1, mean += x;
  if (n == 0) return {NAN, NAN};
  mean /= n;
  for (const double x : v)
    if (std::isfinite(x)) ss += (x - mean) * (x - mean);
  return {mean, n > 1 ? std::sqrt(ss / (n - 1)) : 0.0};
}

// Per epoch, the mean and standard deviation over the lists that reach it.
void mean_and_sd(const std::vector<const std::vector<double>*>& lists, std::vector<double>& mean, std::vector<double>& sd) {
  size_t n = 0;
  for (const auto* l : lists) n = std::max(n, l->size());
  mean.assign(n, NAN);
  sd.assign(n, NAN);
  for (size_t i = 0; i < n; ++i) {
    std::vector<double> v;
    for (const auto* l : lists)
      if (i < l->size()) v.push_back((*l)[i]);
    std::tie(mean[i], sd[i]) = mean_sd(v);
  }
}

// A `train --seeds` folder: its seeds' runs (seeds.json lists them) as one record.
RunRecord load_group(const fs::path& dir) {
  const nlohmann::json seeds = read_json_file(dir / "seeds.json", /*max_depth=*/16);
  if (!seeds.contains("seeds") || !seeds["seeds"].is_array() || seeds["seeds"].empty())
    throw std::runtime_error((dir / "seeds.json").string() + " lists no seeds: not a train --seeds folder");
  std::vector<RunRecord> runs;
  for (const auto& s : seeds["seeds"]) runs.push_back(load_run_record((dir / ("seed" + s.dump())).string()));
  RunRecord g;
  g.name = fs::weakly_canonical(dir).filename().string() + " (" + std::to_string(runs.size()) + " seeds)";
  g.seeds = static_cast<int>(runs.size());
  for (const auto& named : kHistoryLists) {
    const auto list = named.second;
    std::vector<const std::vector<double>*> lists;
    for (const RunRecord& r : runs) lists.push_back(&(r.history.*list));
    mean_and_sd(lists, g.history.*list, g.spread.*list);
  }
  std::vector<double> accuracy, loss;
  for (const RunRecord& r : runs) {
    accuracy.push_back(r.test_accuracy.value_or(NAN));
    loss.push_back(r.test_loss.value_or(NAN));
  }
  const auto [accuracy_mean, accuracy_sd] = mean_sd(accuracy);
  const auto [loss_mean, loss_sd] = mean_sd(loss);
  if (std::isfinite(accuracy_mean)) g.test_accuracy = accuracy_mean, g.test_accuracy_sd = accuracy_sd;
  if (std::isfinite(loss_mean)) g.test_loss = loss_mean, g.test_loss_sd = loss_sd;
  return g;
}

}  // namespace

RunRecord load_run_record(const std::string& path_arg) {
  const fs::path path(path_arg);
  if (fs::is_directory(path) && fs::exists(path / "seeds.json")) return load_group(path);
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
    const bool group = r.seeds > 0;  // a group's cells: the seeds' mean ± their standard deviation
    auto with_sd = [&](std::optional<double> v, std::optional<double> sd) { return cell(v, "%.4f") + (group && v && sd ? cell(sd, "±%.4f") : ""); };
    rows.push_back({printable(r.name), std::to_string(std::max(h.accuracy.size(), h.loss.size())),
                    with_sd(last(h.accuracy), last(r.spread.accuracy)), cell(best(h.accuracy), "%.4f"),
                    with_sd(h.val_accuracy == h.test_accuracy ? std::nullopt : last(h.val_accuracy), last(r.spread.val_accuracy)),
                    with_sd(r.test_accuracy, r.test_accuracy_sd), with_sd(r.test_loss, r.test_loss_sd), with_sd(last(h.loss), last(r.spread.loss)),
                    cell(median(h.epoch_seconds), "%.3f")});
  }
  // Widths in characters, not bytes ("±" is two).
  auto chars = [](const std::string& s) { return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; })); };
  std::vector<size_t> width(header.size(), 0);
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], chars(row[c]));
  std::ostringstream out;
  for (size_t i = 0; i < rows.size(); ++i) {
    for (size_t c = 0; c < rows[i].size(); ++c) {
      const std::string& s = rows[i][c];
      const std::string pad(width[c] - chars(s), ' ');
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
  using List = std::vector<double> History::*;
  const List train = accuracy ? &History::accuracy : &History::loss, validation = accuracy ? &History::val_accuracy : &History::val_loss;
  const List test = accuracy ? &History::test_accuracy : &History::test_loss;
  const bool name_each = runs <= 4;
  // Up to four runs, each curve 2 pixels wider than the next run's, which is drawn over it: identical
  // curves show as nested bands.
  const int color = static_cast<int>(i), width = runs <= 4 ? 2 + 2 * static_cast<int>(runs - 1 - i) : 2;
  const double opacity = runs > 1 ? 0.8 : 1.0;
  auto add = [&](const std::string& set, List list, bool dashed, bool dotted) {  // a group's with its ± sd band
    if ((h.*list).empty()) return;
    const std::string label = name_each ? r.name + " " + set : set == "training" ? r.name : "";
    out.push_back({label, h.*list, color, dashed, dotted, width, opacity, r.spread.*list});
  };
  add("training", train, false, false);
  if (!val_is_test) add("validation", validation, true, false);
  add("test", (h.*test).empty() && val_is_test ? validation : test, false, true);
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
