// plot: OpenCV drawing of heatmaps, curves and the mistake gallery.
#include "report/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "data/idx.h"
#include "interop/rundir.h"

namespace mnist {
namespace {

const int kFont = cv::FONT_HERSHEY_SIMPLEX;
const cv::Scalar kBlack(0, 0, 0), kWhite(255, 255, 255), kGrid(225, 225, 225), kAxis(90, 90, 90);

// matplotlib's tab10, as BGR.
const cv::Scalar kPalette[] = {{180, 119, 31}, {14, 127, 255}, {44, 160, 44},  {40, 39, 214},  {189, 103, 148},
                               {75, 86, 140},  {194, 119, 227}, {127, 127, 127}, {34, 189, 188}, {207, 190, 23}};

cv::Size text_size(const std::string& s, double scale, int* baseline = nullptr) {
  int b = 0;
  cv::Size size = cv::getTextSize(s, kFont, scale, 1, &b);
  if (baseline) *baseline = b;
  return size;
}

// The largest scale <= `scale` at which every string fits in `width` pixels.
double fit_scale(const std::vector<std::string>& strings, int width, double scale) {
  for (const auto& s : strings)
    while (scale > 0.25 && text_size(s, scale).width > width) scale -= 0.02;
  return scale;
}

std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// Tick label with just enough decimals for the axis step.
std::string tick_label(double v, double step) {
  const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, std::fabs(v) < step * 1e-6 ? 0.0 : v);
  return buf;
}

double nice_number(double x, bool round) {
  const double exponent = std::floor(std::log10(x)), fraction = x / std::pow(10.0, exponent);
  double nice;
  if (round)
    nice = fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10;
  else
    nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10;
  return nice * std::pow(10.0, exponent);
}

void dashed_line(cv::Mat& img, cv::Point2d a, cv::Point2d b, const cv::Scalar& color, int thickness, double dash = 8, double gap = 5) {
  const double length = cv::norm(b - a);
  for (double s = 0; s < length; s += dash + gap) {
    const double e = std::min(s + dash, length);
    cv::line(img, a + (b - a) * (s / length), a + (b - a) * (e / length), color, thickness, cv::LINE_AA);
  }
}

}  // namespace

Figure::Figure(int width, int height) : image(height, width, CV_8UC3, kWhite) {}

cv::Rect Figure::text(const std::string& s, int x, int y, double scale, const cv::Scalar& color, Align align) {
  int baseline = 0;
  const cv::Size size = text_size(s, scale, &baseline);
  if (align == Align::center) x -= size.width / 2;
  if (align == Align::right) x -= size.width;
  cv::putText(image, s, {x, y}, kFont, scale, color, 1, cv::LINE_AA);
  const cv::Rect box(x, y - size.height, size.width, size.height + baseline);
  text_boxes.push_back(box);
  return box;
}

cv::Rect Figure::vertical_text(const std::string& s, int cx, int cy, double scale, const cv::Scalar& color) {
  int baseline = 0;
  const cv::Size size = text_size(s, scale, &baseline);
  cv::Mat strip(size.height + baseline + 2, size.width + 2, CV_8UC3, kWhite);
  cv::putText(strip, s, {1, size.height + 1}, kFont, scale, color, 1, cv::LINE_AA);
  cv::Mat rotated;
  cv::rotate(strip, rotated, cv::ROTATE_90_COUNTERCLOCKWISE);
  const cv::Rect box(cx - rotated.cols / 2, cy - rotated.rows / 2, rotated.cols, rotated.rows);
  const cv::Rect inside = box & cv::Rect(0, 0, image.cols, image.rows);
  rotated(cv::Rect(inside.x - box.x, inside.y - box.y, inside.width, inside.height)).copyTo(image(inside));
  text_boxes.push_back(box);
  return box;
}

std::vector<double> Axis::ticks() const {
  std::vector<double> t;
  for (double v = lo; v <= hi + step * 1e-6; v += step) t.push_back(std::round(v / step) * step);
  return t;
}

Axis nice_axis(double lo, double hi, int max_ticks) {
  if (!(hi > lo)) {  // a flat or single-point series: open a small range around it
    const double pad = std::fabs(lo) > 0 ? std::fabs(lo) * 0.05 : 1.0;
    lo -= pad;
    hi += pad;
  }
  const double range = nice_number(hi - lo, false);
  const double step = nice_number(range / std::max(1, max_ticks - 1), true);
  return {std::floor(lo / step) * step, std::ceil(hi / step) * step, step};
}

cv::Scalar blues(double t) {
  // matplotlib's "Blues" anchors (ColorBrewer), from #f7fbff to #08306b, as RGB.
  static const double anchors[9][3] = {{247, 251, 255}, {222, 235, 247}, {198, 219, 239}, {158, 202, 225}, {107, 174, 214},
                                       {66, 146, 198},  {33, 113, 181},  {8, 81, 156},    {8, 48, 107}};
  t = std::clamp(t, 0.0, 1.0) * 8.0;
  const int i = std::min(7, static_cast<int>(t));
  const double f = t - i;
  double rgb[3];
  for (int c = 0; c < 3; ++c) rgb[c] = anchors[i][c] + (anchors[i + 1][c] - anchors[i][c]) * f;
  return cv::Scalar(rgb[2], rgb[1], rgb[0]);
}

namespace {

// The heatmap's values: counts, or each row as percentages of its total; and the largest (at least 1).
std::vector<std::vector<double>> confusion_values(const std::vector<std::vector<int64_t>>& matrix, bool normalize, double& vmax) {
  const size_t n = matrix.size();
  std::vector<std::vector<double>> value(n, std::vector<double>(n, 0));
  vmax = 0;
  for (size_t i = 0; i < n; ++i) {
    double row = 0;
    for (size_t j = 0; j < n; ++j) row += static_cast<double>(matrix[i][j]);
    for (size_t j = 0; j < n; ++j) {
      value[i][j] = normalize ? (row > 0 ? 100.0 * static_cast<double>(matrix[i][j]) / row : 0.0) : static_cast<double>(matrix[i][j]);
      vmax = std::max(vmax, value[i][j]);
    }
  }
  if (vmax <= 0) vmax = 1;
  return value;
}

// The cells from (left, top), `cell` pixels square, each with its value in text readable on it.
void draw_cells(Figure& fig, const std::vector<std::vector<double>>& value, double vmax, bool normalize, int left, int top, int cell) {
  const int n = static_cast<int>(value.size());
  std::vector<std::string> cell_texts;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) cell_texts.push_back(normalize ? format("%.1f", value[i][j]) : format("%.0f", value[i][j]));
  const double cell_scale = fit_scale(cell_texts, cell - 6, 0.5);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      const cv::Rect r(left + j * cell, top + i * cell, cell, cell);
      const cv::Scalar color = blues(value[i][j] / vmax);
      cv::rectangle(fig.image, r, color, cv::FILLED);
      // Readable on the cell: dark text on light cells, white on dark (relative luminance).
      const double luminance = (0.0722 * color[0] + 0.7152 * color[1] + 0.2126 * color[2]) / 255.0;
      const std::string& s = cell_texts[static_cast<size_t>(i * n + j)];
      const int h = text_size(s, cell_scale).height;
      fig.text(s, r.x + cell / 2, r.y + cell / 2 + h / 2, cell_scale, luminance < 0.5 ? kWhite : kBlack, Figure::Align::center);
    }
  }
}

// Class names under the columns and left of the rows, and the axes' titles.
void draw_class_labels(Figure& fig, const std::vector<std::string>& classes, int left, int top, int cell, double row_scale) {
  const int n = static_cast<int>(classes.size()), grid = n * cell;
  const double label_scale = fit_scale(classes, cell - 6, 0.5);
  for (int k = 0; k < n; ++k) {
    const std::string& name = classes[static_cast<size_t>(k)];
    const int h = text_size(name, label_scale).height;
    fig.text(name, left + k * cell + cell / 2, top + grid + 8 + h, label_scale, kBlack, Figure::Align::center);
    const int row_h = text_size(name, row_scale).height;
    fig.text(name, left - 8, top + k * cell + cell / 2 + row_h / 2, row_scale, kBlack, Figure::Align::right);
  }
  fig.text("Predicted label", left + grid / 2, top + grid + 55, 0.6, kBlack, Figure::Align::center);
  fig.vertical_text("True label", 20, top + grid / 2, 0.6, kBlack);
}

// Colour bar from 0 (bottom, light) to the largest value (dark), as seaborn draws it; ticks at
// the nice numbers inside that range.
void draw_colour_bar(Figure& fig, const Axis& axis, double vmax, int bar_x, int bar_w, int top, int grid) {
  for (int y = 0; y < grid; ++y)
    cv::line(fig.image, {bar_x, top + grid - 1 - y}, {bar_x + bar_w - 1, top + grid - 1 - y}, blues((y + 0.5) / grid));
  cv::rectangle(fig.image, cv::Rect(bar_x, top, bar_w, grid), kAxis, 1);
  for (double t : axis.ticks()) {
    if (t > vmax * (1 + 1e-9)) continue;
    const int y = top + grid - 1 - static_cast<int>(std::lround(t / vmax * (grid - 1)));
    cv::line(fig.image, {bar_x + bar_w, y}, {bar_x + bar_w + 4, y}, kAxis);
    const std::string s = tick_label(t, axis.step);
    fig.text(s, bar_x + bar_w + 8, y + text_size(s, 0.45).height / 2, 0.45, kBlack);
  }
}

int widest_text(const std::vector<std::string>& strings, double scale) {
  int widest = 0;
  for (const auto& s : strings) widest = std::max(widest, text_size(s, scale).width);
  return widest;
}

}  // namespace

Figure plot_confusion(const std::vector<std::vector<int64_t>>& matrix, const std::vector<std::string>& classes,
                      const std::string& title, bool normalize) {
  // Cells widen (64..96 px) so column names such as Fashion-MNIST's "T-shirt/top" stay legible.
  const double row_scale = 0.5;
  const int n = static_cast<int>(matrix.size()), cell = std::clamp(widest_text(classes, 0.42) + 10, 64, 96), grid = n * cell;
  double vmax = 0;
  const std::vector<std::vector<double>> value = confusion_values(matrix, normalize, vmax);
  const int left = 40 + widest_text(classes, row_scale) + 12, top = 60, bar_x = left + grid + 30, bar_w = 22;
  const Axis bar_axis = nice_axis(0, vmax, 6);
  std::vector<std::string> bar_labels;
  for (double t : bar_axis.ticks()) bar_labels.push_back(tick_label(t, bar_axis.step));
  Figure fig(std::max(640, bar_x + bar_w + 10 + widest_text(bar_labels, 0.45) + 20), std::max(480, top + grid + 80));
  fig.text(title, fig.image.cols / 2, 35, fit_scale({title}, fig.image.cols - 20, 0.7), kBlack, Figure::Align::center);
  draw_cells(fig, value, vmax, normalize, left, top, cell);
  fig.plot_area = cv::Rect(left, top, grid, grid);
  cv::rectangle(fig.image, fig.plot_area, kAxis, 1);
  draw_class_labels(fig, classes, left, top, cell, row_scale);
  draw_colour_bar(fig, bar_axis, vmax, bar_x, bar_w, top, grid);
  return fig;
}

namespace {

constexpr int kInset = 8;         // points keep this far from the axes' box: a marker is never cut
constexpr int kMarkerRadius = 4;  // a marker's radius; a point without one covers less

// The axes of curves over epochs (see plot_curves).
void curve_axes(const std::vector<Series>& series, bool fraction, Axis& x, Axis& y, size_t& epochs) {
  epochs = 1;
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& s : series) {
    epochs = std::max(epochs, s.values.size());
    for (double v : s.values)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  // Show the detail: pad the data range by 5% and let the nice-number axis round it outward, but
  // not below 0 for data that never is (a loss, an accuracy), nor above 1 for fractions.
  const double pad = (hi - lo) * 0.05;
  y = nice_axis(lo - pad, hi + pad, 7);
  if (lo >= 0) y.lo = std::max(y.lo, 0.0);
  if (fraction) y.hi = std::min(y.hi, 1.0);
  // Epochs from 0 (before training) to a whole round number at or past the last, at least 4.
  const double last = static_cast<double>(std::max<size_t>(epochs, 4));
  x = nice_axis(0, last, 10);
  x.step = std::max(1.0, x.step);
  x.lo = 0;
  x.hi = std::ceil(last / x.step) * x.step;
}

// Where values[i] (epoch i + 1) goes, in pixels of `data`.
cv::Point point_at(const cv::Rect& data, const Axis& x, const Axis& y, size_t i, double value) {
  const double ex = data.x + (static_cast<double>(i + 1) - x.lo) / (x.hi - x.lo) * data.width;
  const double ey = data.y + data.height - (value - y.lo) / (y.hi - y.lo) * data.height;
  return {static_cast<int>(std::lround(ex)), static_cast<int>(std::lround(ey))};
}

// Each series' finite points, in pixels of `data`.
std::vector<std::vector<cv::Point>> curve_points(const std::vector<Series>& series, const cv::Rect& data, const Axis& x, const Axis& y) {
  std::vector<std::vector<cv::Point>> curves;
  for (const auto& s : series) {
    std::vector<cv::Point> points;
    for (size_t i = 0; i < s.values.size(); ++i)
      if (std::isfinite(s.values[i])) points.push_back(point_at(data, x, y, i, s.values[i]));
    curves.push_back(std::move(points));
  }
  return curves;
}

// How many of the curves' segments and points a box would cover.
int covered(const cv::Rect& b, const std::vector<std::vector<cv::Point>>& curves) {
  const cv::Rect around(b.x - kMarkerRadius, b.y - kMarkerRadius, b.width + 2 * kMarkerRadius, b.height + 2 * kMarkerRadius);
  int count = 0;
  for (const auto& points : curves)
    for (size_t i = 0; i < points.size(); ++i) {
      cv::Point a = points[i], c = i + 1 < points.size() ? points[i + 1] : points[i];
      count += around.contains(points[i]) || (i + 1 < points.size() && cv::clipLine(around, a, c));
    }
  return count;
}

// Where the data and the legend go: the legend in the first corner no curve crosses (top right,
// bottom right, top left, bottom left); when every corner is crossed, the data moves down to leave
// a band for the legend at the top.
struct CurveLayout {
  cv::Rect data, legend;
  std::vector<std::vector<cv::Point>> curves;
};
CurveLayout layout_curves(const cv::Rect& plot, const std::vector<Series>& series, const Axis& x, const Axis& y, cv::Size legend) {
  CurveLayout l;
  for (const int headroom : {0, legend.height + 2 * kInset}) {
    l.data = cv::Rect(plot.x + kInset, plot.y + kInset + headroom, plot.width - 2 * kInset, plot.height - 2 * kInset - headroom);
    l.curves = curve_points(series, l.data, x, y);
    const int x_right = plot.x + plot.width - legend.width - 10, x_left = plot.x + 10;
    const int y_top = plot.y + 10, y_bottom = plot.y + plot.height - legend.height - 10;
    const cv::Rect corners[] = {{{x_right, y_top}, legend}, {{x_right, y_bottom}, legend}, {{x_left, y_top}, legend}, {{x_left, y_bottom}, legend}};
    int least = -1;
    for (const cv::Rect& corner : corners) {
      const int c = covered(corner, l.curves);
      if (least < 0 || c < least) least = c, l.legend = corner;
    }
    if (least == 0) break;
  }
  return l;
}

// Grid lines, ticks and their labels on both axes, the box and the axes' titles.
void draw_curve_axes(Figure& fig, const cv::Rect& plot, const cv::Rect& data, const Axis& x, const Axis& y, const std::string& y_label) {
  auto px = [&](double e) { return data.x + (e - x.lo) / (x.hi - x.lo) * data.width; };
  auto py = [&](double v) { return data.y + data.height - (v - y.lo) / (y.hi - y.lo) * data.height; };
  for (double t : y.ticks()) {
    const int yy = static_cast<int>(std::lround(py(t)));
    cv::line(fig.image, {plot.x, yy}, {plot.x + plot.width, yy}, kGrid);
    cv::line(fig.image, {plot.x - 5, yy}, {plot.x, yy}, kAxis);
    const std::string s = tick_label(t, y.step);
    fig.text(s, plot.x - 9, yy + text_size(s, 0.45).height / 2, 0.45, kBlack, Figure::Align::right);
  }
  for (double t : x.ticks()) {
    const int xx = static_cast<int>(std::lround(px(t)));
    cv::line(fig.image, {xx, plot.y}, {xx, plot.y + plot.height}, kGrid);
    cv::line(fig.image, {xx, plot.y + plot.height}, {xx, plot.y + plot.height + 5}, kAxis);
    fig.text(tick_label(t, x.step), xx, plot.y + plot.height + 22, 0.45, kBlack, Figure::Align::center);
  }
  cv::rectangle(fig.image, plot, kAxis, 1);
  fig.plot_area = plot;
  fig.text("Epoch", plot.x + plot.width / 2, fig.image.rows - 18, 0.6, kBlack, Figure::Align::center);
  fig.vertical_text(y_label, 20, plot.y + plot.height / 2, 0.6, kBlack);
}

// A series' line from a to b: solid, or dashed.
void series_line(cv::Mat& image, const Series& s, cv::Point2d a, cv::Point2d b) {
  const cv::Scalar color = kPalette[s.color % 10];
  if (s.dashed || s.dotted)
    dashed_line(image, a, b, color, s.width, s.dotted ? 2 : 8, s.dotted ? 4 : 5);
  else
    cv::line(image, cv::Point(static_cast<int>(a.x), static_cast<int>(a.y)), cv::Point(static_cast<int>(b.x), static_cast<int>(b.y)),
             color, s.width, cv::LINE_AA);
}

// The legend's rows: the labelled series, each `row` pixels high (24, less when many must fit `height`).
struct LegendRows {
  std::vector<const Series*> entries;
  int row = 24;
  double scale = 0.5;  // the labels' text
};
LegendRows legend_rows(const std::vector<Series>& series, int height) {
  LegendRows l;
  for (const auto& s : series)
    if (!s.label.empty()) l.entries.push_back(&s);
  l.row = std::clamp((height - 24) / std::max<int>(1, static_cast<int>(l.entries.size())), 10, 24);
  l.scale = std::min(0.5, l.row / 44.0);
  return l;
}

void draw_legend(Figure& fig, const cv::Rect& box, const LegendRows& rows) {
  cv::rectangle(fig.image, box, kWhite, cv::FILLED);
  cv::rectangle(fig.image, box, kAxis, 1);
  for (size_t i = 0; i < rows.entries.size(); ++i) {
    const int yy = box.y + 6 + rows.row * (static_cast<int>(i) + 1) - rows.row / 6;
    series_line(fig.image, *rows.entries[i], {box.x + 10.0, yy - rows.row / 5.0}, {box.x + 45.0, yy - rows.row / 5.0});
    fig.text(rows.entries[i]->label, box.x + 52, yy, rows.scale, kBlack);
  }
}

// A series' band of value ± spread, for each run of epochs where both are finite, at a fifth of its colour.
void draw_band(Figure& fig, const Series& s, const cv::Rect& data, const Axis& x, const Axis& y) {
  if (s.spread.size() != s.values.size()) return;
  cv::Mat layer = fig.image.clone();
  auto finite = [&](size_t i) { return std::isfinite(s.values[i]) && std::isfinite(s.spread[i]); };
  for (size_t start = 0; start < s.values.size();) {
    size_t end = start;
    while (end < s.values.size() && finite(end)) ++end;
    std::vector<cv::Point> polygon;
    for (size_t i = start; i < end; ++i) polygon.push_back(point_at(data, x, y, i, std::min(s.values[i] + s.spread[i], y.hi)));
    for (size_t i = end; i-- > start;) polygon.push_back(point_at(data, x, y, i, std::max(s.values[i] - s.spread[i], y.lo)));
    if (polygon.size() >= 4) cv::fillPoly(layer, std::vector<std::vector<cv::Point>>{polygon}, kPalette[s.color % 10], cv::LINE_AA);
    start = end + 1;
  }
  cv::addWeighted(layer, 0.2, fig.image, 0.8, 0, fig.image);
}

// One series' curve: a line between each two finite neighbours (a non-finite value is a gap),
// blended in at the series' opacity.
void draw_series(Figure& fig, const Series& s, const cv::Rect& data, const Axis& x, const Axis& y) {
  draw_band(fig, s, data, x, y);
  cv::Mat layer = s.opacity < 1 ? fig.image.clone() : fig.image;
  const std::vector<double>& v = s.values;
  for (size_t i = 1; i < v.size(); ++i)
    if (std::isfinite(v[i - 1]) && std::isfinite(v[i])) series_line(layer, s, point_at(data, x, y, i - 1, v[i - 1]), point_at(data, x, y, i, v[i]));
  if (s.opacity < 1) cv::addWeighted(layer, s.opacity, fig.image, 1 - s.opacity, 0, fig.image);
}

}  // namespace

Figure plot_curves(const std::string& title, const std::string& y_label, const std::vector<Series>& series, bool fraction) {
  Figure fig(960, 600);
  const int left = 95, right = 30, top = 60, bottom = 75;
  const cv::Rect plot(left, top, fig.image.cols - left - right, fig.image.rows - top - bottom);
  Axis x, y;
  size_t epochs = 0;
  curve_axes(series, fraction, x, y, epochs);
  // The legend's size, from its labelled series: rows shrink so that any number fits the axes.
  const LegendRows rows = legend_rows(series, plot.height - 20);
  std::vector<std::string> labels;
  for (const Series* s : rows.entries) labels.push_back(s->label);
  const cv::Size legend(std::min(widest_text(labels, rows.scale) + 60, plot.width - 20),
                        12 + rows.row * static_cast<int>(rows.entries.size()));
  const bool markers = epochs <= 30;
  const CurveLayout l = layout_curves(plot, series, x, y, legend);

  fig.text(title, fig.image.cols / 2, 35, fit_scale({title}, fig.image.cols - 20, 0.7), kBlack, Figure::Align::center);
  draw_curve_axes(fig, plot, l.data, x, y, y_label);
  for (size_t k = 0; k < series.size(); ++k) {
    draw_series(fig, series[k], l.data, x, y);
    const std::vector<cv::Point>& points = l.curves[k];
    if (markers || points.size() == 1)
      for (const auto& p : points) cv::circle(fig.image, p, kMarkerRadius, kPalette[series[k].color % 10], cv::FILLED, cv::LINE_AA);
  }
  fig.curves = l.curves;
  fig.marker_radius = markers ? kMarkerRadius : 0;
  fig.x_axis = x;
  fig.y_axis = y;
  fig.legend = l.legend;
  if (!rows.entries.empty()) draw_legend(fig, l.legend, rows);
  return fig;
}

Figure plot_mistakes(const MistakeSample& sample, const std::vector<std::string>& classes) {
  const std::vector<Mistake>& mistakes = sample.mistakes;
  const int columns = 6, tile_w = 200, tile_h = 135, zoom = 3, top = 60;
  const int rows = std::max(1, static_cast<int>((mistakes.size() + columns - 1) / columns));
  Figure fig(std::max(640, columns * tile_w + 20), std::max(480, top + rows * tile_h + 30));
  const std::string title = "Most confident mistakes: " + std::to_string(mistakes.size()) + " of " +
                            std::to_string(sample.total_mistakes) + " misclassified (of " + std::to_string(sample.total_images) + " test images)";
  fig.text(title, fig.image.cols / 2, 35, fit_scale({title}, fig.image.cols - 20, 0.65), kBlack, Figure::Align::center);
  if (!mistakes.empty() && mistakes.front().tied)
    fig.text("tie: several classes share the top output (saturated sigmoids); argmax takes the lowest, as Keras does",
             fig.image.cols / 2, fig.image.rows - 12, 0.45, kBlack, Figure::Align::center);
  if (mistakes.empty()) fig.text("no misclassified test images", fig.image.cols / 2, fig.image.rows / 2, 0.7, kBlack, Figure::Align::center);
  for (size_t k = 0; k < mistakes.size(); ++k) {
    const Mistake& m = mistakes[k];
    const int x0 = 10 + static_cast<int>(k % columns) * tile_w, y0 = top + static_cast<int>(k / columns) * tile_h;
    const torch::Tensor pixels = (m.image.reshape({kImageRows, kImageCols}).clamp(0, 1) * 255).round().to(torch::kU8).contiguous();
    cv::Mat gray(kImageRows, kImageCols, CV_8UC1, pixels.data_ptr<uint8_t>()), big, bgr;
    cv::resize(gray, big, {kImageCols * zoom, kImageRows * zoom}, 0, 0, cv::INTER_NEAREST);
    cv::cvtColor(big, bgr, cv::COLOR_GRAY2BGR);
    bgr.copyTo(fig.image(cv::Rect(x0 + (tile_w - bgr.cols) / 2, y0, bgr.cols, bgr.rows)));
    const std::string truth = classes[static_cast<size_t>(m.truth)], pred = classes[static_cast<size_t>(m.predicted)];
    const std::string score = format(" (%.2f", m.confidence) + (m.tied ? ", tie)" : ")");
    const std::string line = "true " + truth + " / pred " + pred + score;
    const int text_y = y0 + bgr.rows + 18;
    if (text_size(line, 0.45).width <= tile_w - 8) {
      fig.text(line, x0 + tile_w / 2, text_y, 0.45, kBlack, Figure::Align::center);
    } else {  // long class names (Fashion-MNIST): two lines
      const std::string first = "true " + truth, second = "pred " + pred + score;
      const double s = fit_scale({first, second}, tile_w - 8, 0.45);
      fig.text(first, x0 + tile_w / 2, text_y, s, kBlack, Figure::Align::center);
      fig.text(second, x0 + tile_w / 2, text_y + 18, s, kBlack, Figure::Align::center);
    }
  }
  return fig;
}

void save_png(const std::filesystem::path& path, const Figure& figure) {
  std::vector<uchar> png;
  if (!cv::imencode(".png", figure.image, png)) throw std::runtime_error("cannot encode " + path.string() + " as PNG");
  write_file_atomic(path, std::string(png.begin(), png.end()));
}

}  // namespace mnist

namespace mnist {

void save_confusion_figures(const std::filesystem::path& dir, const Evaluation& test, const std::vector<std::string>& classes) {
  const auto rows = to_rows(test.confusion);
  const std::string accuracy = format("%.2f%%", 100.0 * test.accuracy);
  save_png(dir / "confusion_matrix.png", plot_confusion(rows, classes, "Confusion matrix (test accuracy " + accuracy + ")", false));
  save_png(dir / "confusion_matrix_normalized.png",
           plot_confusion(rows, classes, "Confusion matrix, % of each true label (test accuracy " + accuracy + ")", true));
}

void save_run_figures(const std::filesystem::path& dir, const std::string& run_name, const History& h, const Evaluation& test,
                      const std::vector<std::string>& classes, const MistakeSample* mistakes) {
  save_confusion_figures(dir, test, classes);
  save_curve_figures(dir, run_name, h);
  if (mistakes) save_png(dir / "misclassified.png", plot_mistakes(*mistakes, classes));
}

void save_curve_figures(const std::filesystem::path& dir, const std::string& run_name, const History& h) {
  // val_* is the test set unless the run had a validation_split (then test_* is drawn as well).
  const bool separate_test = h.test_accuracy != h.val_accuracy;
  std::vector<Series> accuracy = {{"accuracy (training, running mean)", h.accuracy, 0, false},
                                  {separate_test ? "val_accuracy" : "val_accuracy (test set)", h.val_accuracy, 1, false}};
  std::vector<Series> loss = {{"loss (training, running mean)", h.loss, 0, false},
                              {separate_test ? "val_loss" : "val_loss (test set)", h.val_loss, 1, false}};
  if (separate_test) {
    accuracy.push_back({"test_accuracy", h.test_accuracy, 2, false});
    loss.push_back({"test_loss", h.test_loss, 2, false});
  }
  save_png(dir / "accuracy.png", plot_curves(run_name + ": accuracy per epoch", "Accuracy", accuracy, true));
  save_png(dir / "loss.png", plot_curves(run_name + ": loss per epoch", "Loss", loss, false));
}

}  // namespace mnist
