// cli: the `mnist` command line (CLI11): the subcommands (command.h, one file each) registered on
// one app; the chosen one runs. Errors go up to main() as exceptions.
#include "app/cli.h"

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "app/command.h"
#include "config/errors.h"

namespace mnist {

int run_cli(int argc, char** argv) {
  CLI::App app{"mnist: the Keras MNIST paper (Flatten -> Dense(100, relu) -> Dense(10, sigmoid), adam) on LibTorch"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every subcommand");
  const std::vector<Command> commands = {
      add_train_command(app),        add_evaluate_command(app), add_plot_command(app),
      add_compare_command(app),      add_summary_command(app),  add_export_command(app),
      add_import_keras_command(app), add_predict_command(app),  add_bench_command(app),
      add_baselines_command(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    throw UsageError(std::string(e.what()) + " (see mnist " + (app.get_subcommands().empty() ? "" : app.get_subcommands()[0]->get_name() + " ") + "--help)");
  }
  for (const Command& c : commands)
    if (*c.app) return c.run();
  return 2;  // unreachable: require_subcommand(1)
}

}  // namespace mnist
