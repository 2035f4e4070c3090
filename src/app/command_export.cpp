// command_export: `mnist export`: a run's model as TorchScript (model.pt + its state_dict), or in
// Keras's formats: FILE.keras, FILE.weights.h5, or FILE.json (the get_weights() list).
#include <iostream>

#include "app/command.h"
#include "config/user_input.h"
#include "interop/export.h"
#include "interop/keras_import.h"
#include "interop/rundir.h"

namespace mnist {
namespace {

struct ExportFlags {
  std::string run, out;
};

// --out, or model.pt in the run's directory (beside the checkpoint.pt --run names).
fs::path export_path(const ExportFlags& f) {
  if (!f.out.empty()) return f.out;
  return fs::is_directory(f.run) ? fs::path(f.run) / "model.pt" : fs::path(f.run).parent_path() / "model.pt";
}

int run_export(const ExportFlags& f) {
  const fs::path out = export_path(f), input = model_file_of(f.run);
  const bool keras = out.extension() == ".json" || is_keras_weights_h5_file(out) || is_keras_model_file(out);
  if (keras)
    check_output_file(out, "--out", {input});
  else
    check_model_outputs(out, weights_path_for(out), "--out", {input});
  LoadedModel loaded = load_model(f.run);
  if (out.extension() == ".json") {  // Keras's get_weights() list, for model.set_weights()
    write_file_atomic(out, keras_weights_json(*loaded.model).dump() + "\n");
    std::cout << "Keras weights (model.get_weights() order) written to " << printable(out.string()) << "\n";
  } else if (is_keras_weights_h5_file(out)) {  // for model.load_weights()
    write_file_atomic(out, keras_weights_h5(*loaded.model, loaded.config.name));
    std::cout << "Keras weights file written to " << printable(out.string()) << " (model.load_weights)\n";
  } else if (is_keras_model_file(out)) {  // for keras.saving.load_model()
    write_file_atomic(out, keras_model_archive(*loaded.model, loaded.config));
    std::cout << "Keras model written to " << printable(out.string()) << " (keras.saving.load_model)\n";
  } else {
    const fs::path weights = export_model(*loaded.model, loaded.config, out);
    std::cout << "TorchScript model written to " << printable(out.string()) << ", state_dict to " << printable(weights.string()) << "\n";
  }
  return 0;
}

}  // namespace

Command add_export_command(CLI::App& app) {
  auto f = std::make_shared<ExportFlags>();
  CLI::App* cmd = app.add_subcommand("export", "write a run's TorchScript model.pt (+ model_weights.pt state_dict)");
  cmd->add_option("--run", f->run, "run directory (or a checkpoint.pt)")->required();
  cmd->add_option("--out", f->out,
                  "output file (default: RUN_DIR/model.pt, TorchScript); FILE.keras, FILE.weights.h5 or FILE.json "
                  "(the get_weights() list): Keras's formats instead");
  return {cmd, [f] { return run_export(*f); }};
}

}  // namespace mnist
