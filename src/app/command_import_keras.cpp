// command_import_keras: `mnist import-keras`: a Keras model or its weights as a TorchScript model.
// FILE.keras brings its own model config; FILE.json and FILE.weights.h5 take the layers from --config.
#include <iostream>

#include "app/command.h"
#include "config/errors.h"
#include "config/user_input.h"
#include "interop/export.h"
#include "interop/keras_import.h"
#include "interop/rundir.h"

namespace mnist {
namespace {

struct ImportKerasFlags {
  std::string file, out, config_out;
  ConfigFlags config;
};

// Neither output may replace an input, a non-file, or the other output.
void check_outputs(const ImportKerasFlags& f, bool config_given) {
  std::vector<fs::path> inputs = {f.file};
  if (config_given) inputs.emplace_back(f.config.config);
  const fs::path weights = weights_path_for(f.out);
  check_model_outputs(f.out, weights, "--out", inputs);
  if (f.config_out.empty()) return;
  inputs.insert(inputs.end(), {f.out, weights});
  check_output_file(f.config_out, "--config-out", inputs);
}

int run_import_keras(const ImportKerasFlags& f, bool config_given) {
  check_outputs(f, config_given);
  Config config;
  Params params;
  if (is_keras_model_file(f.file)) {
    if (config_given)
      throw UsageError("--config does not apply to " + f.file + ": a .keras file carries its own model config (--set still applies)");
    KerasModel keras = read_keras_model(f.file);
    for (const auto& note : keras.notes) std::cout << "note: " << printable(note) << "\n";
    config = f.config.sets.empty() ? keras.config : apply_overrides(keras.config, f.config.sets);
    params = std::move(keras.params);
  } else {
    config = resolve_config(f.config);
    params = read_keras_weights(f.file, config);
  }
  Model model = model_with_params(config, params, "Keras weights file " + f.file);
  if (!f.config_out.empty()) write_file_atomic(f.config_out, to_json(config).dump(2) + "\n");
  const fs::path weights = export_model(*model, config, f.out);
  std::cout << "imported " << printable(f.file) << " into " << printable(f.out) << " (state_dict: " << printable(weights.string()) << ")"
            << (f.config_out.empty() ? "" : "; its config into " + printable(f.config_out)) << "\n";
  return 0;
}

}  // namespace

Command add_import_keras_command(CLI::App& app) {
  auto f = std::make_shared<ImportKerasFlags>();
  CLI::App* cmd = app.add_subcommand("import-keras", "turn a Keras model or its weights into a TorchScript model");
  cmd->add_option("file", f->file,
                  "FILE.keras (model.save: config and weights), FILE.weights.h5 (model.save_weights) or FILE.json "
                  "(model.get_weights() list); the last two take the layers from --config")
      ->required();
  add_config_flags(*cmd, f->config, false);
  cmd->add_option("--out", f->out, "TorchScript model to write")->required();
  cmd->add_option("--config-out", f->config_out, "also write the model's config (ours, resolved) to this JSON file");
  return {cmd, [f, cmd] { return run_import_keras(*f, cmd->count("--config") > 0); }};
}

}  // namespace mnist
