// plot: the run's figures, drawn with OpenCV: the confusion-matrix heatmap (the paper's Figure 1),
// accuracy and loss curves (its Figure 2), and a gallery of misclassified test images. Every
// piece of text goes through Figure::text, which records its box, and curve figures record their
// points, axes and legend, so tests can check that no text leaves the canvas or overlaps other
// text, that no marker is cut by the axes' box, and that the legend covers no curve.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <torch/torch.h>

#include "train/history.h"
#include "train/metrics.h"

namespace mnist {

// "Nice numbers" axis (Heckbert, Graphics Gems 1990): ticks on 1, 2 or 5 x 10^k covering [lo, hi].
struct Axis {
  double lo = 0, hi = 1, step = 1;
  std::vector<double> ticks() const;
};
Axis nice_axis(double lo, double hi, int max_ticks = 8);

struct Figure {
  cv::Mat image;                       // 8-bit BGR
  std::vector<cv::Rect> text_boxes;    // every text drawn, in pixels
  cv::Rect plot_area;                  // where the data is drawn: the heatmap grid, the curves' axes box
  // Curve figures only:
  std::vector<std::vector<cv::Point>> curves;  // each series' points, in pixels
  int marker_radius = 0;                        // 0 when the points have no markers
  cv::Rect legend;                              // the legend's box
  Axis x_axis, y_axis;                          // in epochs and in the data's unit
  Figure(int width, int height);
  enum class Align { left, center, right };
  // Draws `s` with its baseline's anchor at (x, y) and returns its box.
  cv::Rect text(const std::string& s, int x, int y, double scale, const cv::Scalar& color, Align align = Align::left);
  // Text rotated 90 degrees counter-clockwise, centred on (cx, cy) (a y-axis title).
  cv::Rect vertical_text(const std::string& s, int cx, int cy, double scale, const cv::Scalar& color);
};

// Sequential "Blues" colour map (seaborn's default for heatmaps), t in [0, 1]: light to dark.
cv::Scalar blues(double t);

// Rows = true label. `normalize`: each row as percentages of its total.
Figure plot_confusion(const std::vector<std::vector<int64_t>>& matrix, const std::vector<std::string>& classes,
                      const std::string& title, bool normalize);

struct Series {
  std::string label;           // "": not in the legend
  std::vector<double> values;  // values[i] belongs to epoch i + 1
  int color = 0;               // index into the palette
  bool dashed = false;
  bool dotted = false;
  int width = 2;               // pixels
  double opacity = 1.0;        // below 1 a curve drawn later lets the ones under it show through
  std::vector<double> spread = {};  // or per value a standard deviation: a translucent band of value ± it
};
// Curves over epochs, from epoch 0 to a round number at or past the last (at least 4, so a short
// run has ticks to read). The y-axis pads the data by 5% and never goes below 0 for data that
// does not (losses, accuracies); `fraction`: nor above 1 (accuracies). Points keep a margin from
// the axes' box, so no marker is cut; the legend takes a corner that no curve crosses, making
// room above the data when none is free. A value that is not finite (a diverged epoch) is a gap.
Figure plot_curves(const std::string& title, const std::string& y_label, const std::vector<Series>& series, bool fraction);

// Grid of mistakes in the order given (most confident first), captioned "true 4 / pred 9 (0.97)".
Figure plot_mistakes(const MistakeSample& sample, const std::vector<std::string>& classes);

// PNG, written under a temporary name and renamed into place.
void save_png(const std::filesystem::path& path, const Figure& figure);

// The figures of a run directory: confusion_matrix.png, confusion_matrix_normalized.png,
// accuracy.png, loss.png and (when `mistakes` is given) misclassified.png.
void save_run_figures(const std::filesystem::path& dir, const std::string& run_name, const History& history,
                      const Evaluation& test, const std::vector<std::string>& classes, const MistakeSample* mistakes);
void save_confusion_figures(const std::filesystem::path& dir, const Evaluation& test, const std::vector<std::string>& classes);
// accuracy.png and loss.png alone: what a History without a model (a Keras run's) can draw.
void save_curve_figures(const std::filesystem::path& dir, const std::string& run_name, const History& history);

}  // namespace mnist
