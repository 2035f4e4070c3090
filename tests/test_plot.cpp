// Figures tested on pixels and on the recorded text boxes: colours follow the data, curves go the
// right way, axes contain the data, and no text leaves the canvas or overlaps other text.
#include <gtest/gtest.h>

#include <cmath>

#include <opencv2/imgproc.hpp>

#include "config/config.h"
#include "helpers.h"
#include "report/compare.h"
#include "report/plot.h"

using namespace mnist;
using namespace testing_helpers;

namespace {

double luminance(const cv::Vec3b& bgr) { return 0.0722 * bgr[0] + 0.7152 * bgr[1] + 0.2126 * bgr[2]; }

// Every text box lies inside the image and no two boxes intersect; the canvas is at least 640x480.
// Curve figures: every point, with its marker, lies inside the axes' box (none cut in half by
// the border), the legend lies inside it too, and no curve's point or segment crosses the legend.
void expect_clean_layout(const Figure& f, const std::string& what) {
  EXPECT_GE(f.image.cols, 640) << what;
  EXPECT_GE(f.image.rows, 480) << what;
  const cv::Rect canvas(0, 0, f.image.cols, f.image.rows);
  for (size_t i = 0; i < f.text_boxes.size(); ++i) {
    EXPECT_EQ((f.text_boxes[i] & canvas), f.text_boxes[i]) << what << ": text box " << i << " leaves the canvas";
    for (size_t j = i + 1; j < f.text_boxes.size(); ++j)
      EXPECT_EQ((f.text_boxes[i] & f.text_boxes[j]).area(), 0) << what << ": text boxes " << i << " and " << j << " overlap";
  }
  if (f.curves.empty()) return;
  const cv::Rect inside(f.plot_area.x + 1, f.plot_area.y + 1, f.plot_area.width - 2, f.plot_area.height - 2);  // within the border line
  EXPECT_EQ((f.legend & inside), f.legend) << what << ": the legend leaves the axes";
  const int r = std::max(f.marker_radius, 1);
  for (size_t k = 0; k < f.curves.size(); ++k)
    for (size_t i = 0; i < f.curves[k].size(); ++i) {
      const cv::Point p = f.curves[k][i];
      const cv::Rect mark(p.x - r, p.y - r, 2 * r + 1, 2 * r + 1);
      EXPECT_EQ((mark & inside), mark) << what << ": curve " << k << " point " << i << " is cut by the axes' box";
      EXPECT_EQ((mark & f.legend).area(), 0) << what << ": the legend covers curve " << k << " point " << i;
      if (i + 1 < f.curves[k].size()) {
        cv::Point a = p, b = f.curves[k][i + 1];
        EXPECT_FALSE(cv::clipLine(f.legend, a, b)) << what << ": the legend covers curve " << k << " between points " << i << " and " << i + 1;
      }
    }
}

std::vector<std::vector<int64_t>> diagonal(int64_t on, int64_t off) {
  std::vector<std::vector<int64_t>> m(10, std::vector<int64_t>(10, off));
  for (int i = 0; i < 10; ++i) m[i][i] = on;
  return m;
}

// Mean row of the pixels in column x close to `bgr`, or -1 if none.
double mean_row_of_colour(const cv::Mat& img, int x, const cv::Vec3b& bgr) {
  double sum = 0;
  int n = 0;
  for (int y = 0; y < img.rows; ++y) {
    const cv::Vec3b p = img.at<cv::Vec3b>(y, x);
    if (std::abs(p[0] - bgr[0]) + std::abs(p[1] - bgr[1]) + std::abs(p[2] - bgr[2]) < 40) sum += y, ++n;
  }
  return n ? sum / n : -1;
}

const cv::Vec3b kFirstSeries(180, 119, 31);  // tab10 blue, BGR

}  // namespace

TEST(Plot, NiceAxisCoversTheDataWithRoundSteps) {
  for (auto [lo, hi] : std::vector<std::pair<double, double>>{{0.9134, 0.9987}, {0, 1126}, {1, 100}, {0.0012, 0.2755}, {5, 5}}) {
    const Axis a = nice_axis(lo, hi, 8);
    EXPECT_LE(a.lo, lo);
    EXPECT_GE(a.hi, hi);
    const double mantissa = a.step / std::pow(10.0, std::floor(std::log10(a.step)));
    EXPECT_TRUE(std::fabs(mantissa - 1) < 1e-9 || std::fabs(mantissa - 2) < 1e-9 || std::fabs(mantissa - 5) < 1e-9) << a.step;
    EXPECT_LE(a.ticks().size(), 11u);
    EXPECT_GE(a.ticks().size(), 2u);
  }
}

TEST(Plot, BluesGoesFromLightToDark) {
  double previous = 1e9;
  for (double t = 0; t <= 1.0001; t += 0.05) {
    const cv::Scalar c = blues(t);
    const double l = 0.0722 * c[0] + 0.7152 * c[1] + 0.2126 * c[2];
    EXPECT_LT(l, previous);
    previous = l;
  }
}

TEST(Plot, HeatmapOfADiagonalMatrixIsDarkOnTheDiagonal) {
  const Figure f = plot_confusion(diagonal(1000, 3), class_names(Dataset::mnist), "diagonal", false);
  // Sample each cell near its top-left corner, away from the count written in its centre.
  const int cell = f.plot_area.width / 10, gx = f.plot_area.x, gy = f.plot_area.y;
  for (int i = 0; i < 10; ++i)
    for (int j = 0; j < 10; ++j) {
      const double l = luminance(f.image.at<cv::Vec3b>(gy + i * cell + 4, gx + j * cell + 4));
      if (i == j)
        EXPECT_LT(l, 80) << i << "," << j;
      else
        EXPECT_GT(l, 200) << i << "," << j;
    }
  expect_clean_layout(f, "heatmap");
}

TEST(Plot, CellColourIsMonotonicInItsCount) {
  std::vector<std::vector<int64_t>> m(10, std::vector<int64_t>(10, 0));
  for (int j = 0; j < 10; ++j) m[0][j] = 100 * (j + 1);  // row 0 rises left to right
  const Figure f = plot_confusion(m, class_names(Dataset::mnist), "rising", false);
  const int cell = f.plot_area.width / 10;
  double previous = 1e9;
  for (int j = 0; j < 10; ++j) {
    const double l = luminance(f.image.at<cv::Vec3b>(f.plot_area.y + 4, f.plot_area.x + j * cell + 4));
    EXPECT_LT(l, previous) << "column " << j;
    previous = l;
  }
}

TEST(Plot, RisingSeriesGoesUpOnTheCanvasAndShowsDetail) {
  std::vector<double> acc;
  for (int e = 0; e < 100; ++e) acc.push_back(0.92 + 0.078 * (1 - std::exp(-e / 10.0)));
  const Figure f = plot_curves("rising", "Accuracy", {{"accuracy", acc, 0, false}}, true);
  const cv::Rect& p = f.plot_area;
  int first = p.x, last = p.x + p.width - 1;  // the outermost columns where the series is drawn
  while (first < last && mean_row_of_colour(f.image, first, kFirstSeries) < 0) ++first;
  while (last > first && mean_row_of_colour(f.image, last, kFirstSeries) < 0) --last;
  EXPECT_GT(last - first, p.width * 9 / 10);  // spans the x axis
  const double early = mean_row_of_colour(f.image, first + 2, kFirstSeries), late = mean_row_of_colour(f.image, last - 2, kFirstSeries);
  ASSERT_GT(early, 0);
  ASSERT_GT(late, 0);
  EXPECT_LT(late, early);               // higher value, smaller row
  EXPECT_GT(early - late, p.height / 2);  // 0.92 -> 0.998 fills the plot, not a flat line at the top
  EXPECT_GE(late, p.y);                    // the top of the data is inside the axes
  EXPECT_LE(early, p.y + p.height);
  expect_clean_layout(f, "curves, 100 epochs");
}

TEST(Plot, AxisRangeContainsTheDataAndOneEpochWorks) {
  // A single epoch's markers are drawn inside the axes (not clipped away).
  const Figure one = plot_curves("one epoch", "Accuracy", {{"accuracy", {0.9218}, 0, false}, {"val", {0.9559}, 1, false}}, true);
  int found = 0;
  for (int y = one.plot_area.y; y < one.plot_area.y + one.plot_area.height; ++y)
    for (int x = one.plot_area.x; x < one.plot_area.x + one.plot_area.width; ++x) {
      const cv::Vec3b p = one.image.at<cv::Vec3b>(y, x);
      found += std::abs(p[0] - kFirstSeries[0]) + std::abs(p[1] - kFirstSeries[1]) + std::abs(p[2] - kFirstSeries[2]) < 30;
    }
  EXPECT_GT(found, 20);  // the marker of the single epoch is drawn
  expect_clean_layout(one, "curves, 1 epoch");
  const Figure loss = plot_curves("loss", "Loss", {{"loss", {0.2757, 0.1257, 0.0865}, 0, false}}, false);
  expect_clean_layout(loss, "loss curves");
}

TEST(Plot, ShortRunsHaveTicksToReadAndLossesStayAboveZero) {
  // A 2-epoch run's figures: a loss falling steeply, accuracies rising to the top.
  const Figure loss = plot_curves("quick: loss per epoch", "Loss",
                                  {{"loss (training, running mean)", {0.3412, 0.0101}, 0, false}, {"val_loss", {0.1533, 0.0981}, 1, false}}, false);
  EXPECT_GE(loss.y_axis.lo, 0.0);  // a loss is never negative; its axis does not pretend it can be
  EXPECT_GE(loss.x_axis.ticks().size(), 4u);
  expect_clean_layout(loss, "loss, 2 epochs");
  const Figure acc = plot_curves("quick: accuracy per epoch", "Accuracy",
                                 {{"accuracy (training, running mean)", {0.9012, 0.9998}, 0, false}, {"val_accuracy", {0.9533, 1.0}, 1, false}}, true);
  EXPECT_LE(acc.y_axis.hi, 1.0);
  EXPECT_EQ(acc.marker_radius, 4);
  expect_clean_layout(acc, "accuracy, 2 epochs, reaching 1.0");
  // Curves through every corner: the legend makes room above the data instead of covering it.
  std::vector<double> zigzag;
  for (int e = 0; e < 20; ++e) zigzag.push_back(e % 2 ? 0.99 : 0.01);
  expect_clean_layout(plot_curves("zigzag", "Accuracy", {{"zigzag", zigzag, 0, false}}, true), "zigzag through every corner");
  // A negative series keeps a negative axis.
  EXPECT_LT(plot_curves("signed", "Value", {{"v", {-1.0, 2.0}, 0, false}}, false).y_axis.lo, -1.0 + 1e-12);
}

TEST(Plot, LongNamesStayInsideTheCanvas) {
  expect_clean_layout(plot_confusion(diagonal(1000, 12), class_names(Dataset::fashion_mnist), "Fashion-MNIST confusion", true),
                      "fashion heatmap");
  MistakeSample sample;
  sample.total_mistakes = 999;
  sample.total_images = 10000;
  for (int i = 0; i < 36; ++i) sample.mistakes.push_back({torch::rand({1, 28, 28}), 9, 0, 0.97, i % 2 == 0});
  expect_clean_layout(plot_mistakes(sample, class_names(Dataset::fashion_mnist)), "fashion gallery");
  expect_clean_layout(plot_mistakes(MistakeSample{}, class_names(Dataset::mnist)), "empty gallery");
  std::vector<Series> many;
  for (int i = 0; i < 8; ++i) many.push_back({"a-rather-long-run-directory-name-" + std::to_string(i) + " val_accuracy", {0.9, 0.95}, i, i % 2 == 1});
  expect_clean_layout(plot_curves("overlay", "Accuracy", many, true), "overlay with long names");
}

TEST(Plot, GalleryCaptionsTheMistake) {
  MistakeSample sample;
  sample.total_mistakes = 1;
  sample.total_images = 10;
  sample.mistakes.push_back({torch::ones({1, 28, 28}), 4, 9, 0.97, false});
  const Figure f = plot_mistakes(sample, class_names(Dataset::mnist));
  ASSERT_EQ(f.text_boxes.size(), 2u);  // title + one caption line "true 4 / pred 9 (0.97)"
  // The white digit is drawn: a block of bright pixels under the title.
  EXPECT_GT(luminance(f.image.at<cv::Vec3b>(f.text_boxes[1].y - 40, f.text_boxes[1].x + f.text_boxes[1].width / 2)), 250);
}

TEST(Compare, TableOfTwoHistoryFiles) {
  TempDir tmp;
  write_file(tmp / "keras.json", R"({"accuracy": [0.92, 0.97, 0.9996], "loss": [0.27, 0.09, 0.002],
                                      "val_accuracy": [0.95, 0.97, 0.975], "val_loss": [0.15, 0.1, 0.12]})");
  write_file(tmp / "old.json", R"({"acc": [0.5, 0.75], "loss": [1.0, 0.5], "epoch_seconds": [2.0, 4.0]})");
  const std::vector<RunRecord> runs = {load_run_record((tmp / "keras.json").string()), load_run_record((tmp / "old.json").string())};
  const std::string table = comparison_table(runs);
  EXPECT_NE(table.find("keras       3     0.9996          0.9996   0.9750         -          -      0.0020        -"), std::string::npos) << table;
  EXPECT_NE(table.find("old         2     0.7500          0.7500        -         -          -      0.5000    3.000"), std::string::npos) << table;
  expect_clean_layout(comparison_chart(runs), "comparison chart");
  for (const Figure& panel : comparison_panels(runs)) expect_clean_layout(panel, "comparison panel");
  // A diverged Keras run's History as Python's json.dump writes it: NaN and Infinity are read (not inside
  // strings), shown as "nan"/"inf" in the table and as gaps in the curves.
  write_file(tmp / "diverged.json", R"({"accuracy": [0.9, NaN, 0.1], "loss": [0.3, Infinity, -Infinity],
                                         "test_accuracy": [0.95, 0.5, NaN], "note": ["NaN stays text", "-Infinity too"]})");
  const RunRecord diverged = load_run_record((tmp / "diverged.json").string());
  EXPECT_TRUE(std::isnan(diverged.history.accuracy[1]));
  EXPECT_EQ(diverged.history.loss[1], HUGE_VAL);
  EXPECT_EQ(diverged.history.loss[2], -HUGE_VAL);
  EXPECT_NE(comparison_table({diverged}).find("diverged       3     0.1000          0.9000        -       nan          -        -inf"), std::string::npos)
      << comparison_table({diverged});
  const std::vector<Figure> panels = comparison_panels({diverged});
  ASSERT_EQ(panels[0].curves.size(), 2u);  // training and test accuracy
  EXPECT_EQ(panels[0].curves[0].size(), 2u);  // epochs 1 and 3: the NaN is left out
  EXPECT_EQ(panels[1].curves[0].size(), 1u);  // the loss: only epoch 1 is finite
  // A History file with per-epoch test keys gives its last; a link to a run is named for the run.
  write_file(tmp / "with-test.json", R"({"accuracy": [0.9], "loss": [0.3], "test_accuracy": [0.95], "test_loss": [0.12]})");
  EXPECT_EQ(load_run_record((tmp / "with-test.json").string()).test_accuracy, 0.95);
  EXPECT_EQ(load_run_record((tmp / "with-test.json").string()).test_loss, 0.12);
  fs::create_directory(tmp / "quick-20261202-150958");
  write_file(tmp / "quick-20261202-150958" / "history.json", R"({"accuracy": [0.9], "loss": [0.3]})");
  fs::create_directory_symlink("quick-20261202-150958", tmp / "latest");
  EXPECT_EQ(load_run_record((tmp / "latest").string()).name, "quick-20261202-150958");
  EXPECT_EQ(load_run_record((tmp / "latest").string() + "/").name, "quick-20261202-150958");
  write_file(tmp / "bad.json", R"({"accuracy": [0.9, "x"]})");
  try {
    load_run_record((tmp / "bad.json").string());
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("\"accuracy\" must be a list of numbers"), std::string::npos) << e.what();
  }
  // One entry per epoch in every list, and each key once: anything else is not one run's History.
  const std::pair<std::string, std::string> not_one_run[] = {
      {R"({"accuracy": [0.9, 0.95], "loss": [0.3]})", "\"accuracy\" has 2 entries where \"loss\" has 1"},
      {R"({"accuracy": [0.9], "val_loss": [0.3, 0.2]})", "\"val_loss\" has 2 entries where \"accuracy\" has 1"},
      {R"({"accuracy": [0.9], "loss": [0.3], "loss": [0.2]})", "the key \"loss\" appears twice in one object"}};
  for (const auto& [text, expected] : not_one_run) {
    write_file(tmp / "bad.json", text);
    try {
      load_run_record((tmp / "bad.json").string());
      ADD_FAILURE() << text;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  }
}

// A `train --seeds` folder is one group: per-epoch means with their standard deviation as a band, and
// the table's cells as mean ± sd.
TEST(Compare, ASeedsFolderIsAGroupOfMeansAndSpreads) {
  TempDir tmp;
  const fs::path group = tmp / "paper-seeds";
  fs::create_directories(group / "seed0");
  fs::create_directories(group / "seed1");
  write_file(group / "seeds.json", R"({"seeds": [0, 1]})");
  write_file(group / "seed0" / "history.json", R"({"accuracy": [0.90, 0.95], "loss": [0.30, 0.20]})");
  write_file(group / "seed1" / "history.json", R"({"accuracy": [0.92, 0.97], "loss": [0.28, 0.16]})");
  write_file(group / "seed0" / "metrics.json", R"({"test_accuracy": 0.97, "test_loss": 0.10})");
  write_file(group / "seed1" / "metrics.json", R"({"test_accuracy": 0.98, "test_loss": 0.12})");
  const RunRecord r = load_run_record(group.string());
  EXPECT_EQ(r.name, "paper-seeds (2 seeds)");
  EXPECT_EQ(r.seeds, 2);
  EXPECT_DOUBLE_EQ(r.history.accuracy[1], 0.96);
  EXPECT_NEAR(r.spread.accuracy[1], std::sqrt(2 * 0.01 * 0.01), 1e-12);  // sample sd of 0.95 and 0.97
  EXPECT_DOUBLE_EQ(*r.test_accuracy, 0.975);
  const std::string table = comparison_table({r});
  EXPECT_NE(table.find("paper-seeds (2 seeds)       2  0.9600±0.0141          0.9600        -  0.9750±0.0071  0.1100±0.0141"), std::string::npos) << table;
  const std::vector<Figure> panels = comparison_panels({r});
  expect_clean_layout(panels[0], "group accuracy");
  EXPECT_EQ(panels[0].curves.size(), 1u);  // the training mean; the band is drawn under it
}

TEST(Compare, HistoryCsvIsKerasCsvLoggerFormat) {
  History h;
  h.accuracy = {0.5, 0.75};
  h.loss = {1.0, 0.5};
  h.val_accuracy = {0.25, 0.5};
  h.val_loss = {2.0, 1.5};
  EXPECT_EQ(h.to_csv(), "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.5,1,0.25,2\n1,0.75,0.5,0.5,1.5\n");
}
