// command_compare: `mnist compare`: runs and Keras History files side by side. Prints the table;
// draws the overlay only where --out names a file, so nothing is written unasked.
#include <iostream>

#include "app/command.h"
#include "config/user_input.h"
#include "interop/rundir.h"
#include "report/compare.h"

namespace mnist {
namespace {

struct CompareFlags {
  std::vector<std::string> inputs;
  std::string out;
};

// The files compare reads: each History file, and each run directory's records.
std::vector<fs::path> files_read(const std::vector<std::string>& inputs) {
  std::vector<fs::path> files;
  for (const fs::path in : inputs) {
    if (!fs::is_directory(in)) {
      files.push_back(in);
      continue;
    }
    for (const char* name : {"history.json", "metrics.json", "config.json", "checkpoint.pt"}) files.push_back(in / name);
  }
  return files;
}

int run_compare(const CompareFlags& f) {
  if (!f.out.empty()) check_output_file(f.out, "--out", files_read(f.inputs));
  std::vector<RunRecord> runs;
  for (const auto& in : f.inputs) runs.push_back(load_run_record(in));
  std::cout << comparison_table(runs);
  if (f.out.empty()) return 0;
#ifdef MNIST_WITH_OPENCV
  save_png(f.out, comparison_chart(runs));
  std::cout << "accuracy overlay written to " << printable(f.out) << "\n";
#else
  figures_skipped("accuracy overlay " + f.out);
#endif
  return 0;
}

}  // namespace

Command add_compare_command(CLI::App& app) {
  auto f = std::make_shared<CompareFlags>();
  CLI::App* cmd = app.add_subcommand("compare", "tabulate and overlay runs and Keras History JSON files");
  cmd->add_option("inputs", f->inputs, "run directories and/or Keras History JSON files")->required()->expected(1, -1);
  cmd->add_option("--out", f->out, "also draw the overlaid accuracy curves into this PNG file");
  return {cmd, [f] { return run_compare(*f); }};
}

}  // namespace mnist
