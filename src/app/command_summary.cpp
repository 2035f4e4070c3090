// command_summary: `mnist summary`: a config's model as Keras's model.summary() prints it, and
// the resolved config with every default written out.
#include <iostream>

#include "app/command.h"
#include "model/model.h"

namespace mnist {

Command add_summary_command(CLI::App& app) {
  auto f = std::make_shared<ConfigFlags>();
  CLI::App* cmd = app.add_subcommand("summary", "print a config's model summary and resolved config");
  add_config_flags(*cmd, *f, true);
  return {cmd, [f] {
            const Config c = resolve_config(*f);
            Model model(c.model, kImageShape, c.training.seed);
            std::cout << model->summary(c.name) << to_json(c).dump(2) << "\n";
            return 0;
          }};
}

}  // namespace mnist
