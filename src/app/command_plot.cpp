// command_plot: `mnist plot RUN`: redraws every figure of a run directory from its files (the
// gallery needs the test images), in place or, with --out, into another directory (created if
// missing). It writes only figures: a run's records (history, checkpoint, metrics) are the
// trainer's, which may be writing them while the figures are drawn.
#include <iostream>

#include "app/command.h"
#include "config/errors.h"
#include "config/user_input.h"
#include "interop/export.h"
#include "interop/rundir.h"
#include "train/metrics.h"
#ifdef MNIST_WITH_OPENCV
#include "report/plot.h"
#endif

namespace mnist {
namespace {

struct PlotFlags {
  std::string run, data, out;
};

#ifdef MNIST_WITH_OPENCV
// A History file, or a run folder without a model (a Keras run's, scripts/keras_reference.py): its curves.
int plot_curves_only(const PlotFlags& f, const fs::path& history_file) {
  const fs::path input(f.run);
  if (!fs::is_directory(input) && f.out.empty())
    throw UsageError(f.run + " is a History file: give --out DIR for its figures");
  const History history = History::from_json(read_json_file(history_file, /*max_depth=*/16, /*python_non_finite=*/true), history_file.string());
  const fs::path target = f.out.empty() ? input : fs::path(f.out);
  const std::string name = fs::is_directory(input) ? fs::weakly_canonical(input).filename().string() : input.stem().string();
  save_curve_figures(target, name, history);
  std::cout << "figures written to " << printable(target.string()) << ": accuracy.png, loss.png (" << printable(f.run)
            << " holds no model, so no confusion matrix or gallery)\n";
  return 0;
}
#endif

int run_plot(const PlotFlags& f) {
#ifdef MNIST_WITH_OPENCV
  const fs::path dir(f.run);
  if (!fs::is_directory(dir)) {
    if (!fs::exists(dir)) throw std::runtime_error(f.run + " does not exist: plot takes a run directory or a History file");
    return plot_curves_only(f, dir);
  }
  if (!fs::exists(dir / "history.json")) throw std::runtime_error(f.run + " is not a run directory (no history.json)");
  if (!fs::exists(dir / "checkpoint.pt") && !fs::exists(dir / "model.pt")) return plot_curves_only(f, dir / "history.json");
  const History history = History::from_json(read_json_file(dir / "history.json", /*max_depth=*/16), (dir / "history.json").string());
  LoadedModel loaded = load_model(f.run);
  const Split test = load_checked_split(data_dir_of(f.data, loaded.config), /*train=*/false, loaded.config);
  const Evaluation e = evaluate(loaded.model, test, loaded.config.training);
  const MistakeSample mistakes = most_confident_mistakes(loaded.model, test, loaded.config.training, kGallerySize);
  const fs::path target = f.out.empty() ? dir : fs::path(f.out);
  save_run_figures(target, loaded.config.name, history, e, class_names(loaded.config.dataset), &mistakes);
  std::cout << "figures written to " << printable(target.string())
            << ": confusion_matrix.png, confusion_matrix_normalized.png, accuracy.png, loss.png, misclassified.png\n";
  return 0;
#else
  (void)f;
  needs_opencv("plot");
#endif
}

}  // namespace

Command add_plot_command(CLI::App& app) {
  auto f = std::make_shared<PlotFlags>();
  CLI::App* cmd = app.add_subcommand("plot", "redraw every figure of a run directory (the curves of a History file or a Keras run)");
  cmd->add_option("run", f->run, "run directory, or a History JSON file (with --out)")->required();
  add_data_option(*cmd, f->data);
  cmd->add_option("--out", f->out, "write the figures into this directory (created if missing) instead of the run's");
  return {cmd, [f] { return run_plot(*f); }};
}

}  // namespace mnist
