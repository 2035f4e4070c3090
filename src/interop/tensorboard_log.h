// tensorboard_log: a run's TensorBoard logs, under RUN/tensorboard/, laid out and tagged as
// keras.callbacks.TensorBoard writes them, so that a Keras run and ours line up on one chart:
//   train/       epoch_loss, epoch_accuracy, epoch_learning_rate (step: the epoch, from 0);
//                batch_loss, batch_accuracy every update_freq batches (step: the batch, from 1);
//                <layer>/<kernel|bias|...>/histogram every histogram_freq epochs; the config as text
//   validation/  epoch_loss, epoch_accuracy, with a validation split
//   test/        epoch_loss, epoch_accuracy on the test set (not Keras's; the reference script logs
//                the same), and at the end the confusion matrices and the mistake gallery
//   .            the hyper-parameters (TensorBoard's hparams dashboard): every scalar of the config
// A resumed run appends new event files; TensorBoard reads a folder's files as one run.
#pragma once
#include <filesystem>
#include <memory>

#include "config/config.h"
#include "interop/event_file.h"
#include "train/callbacks.h"

namespace mnist {

class TensorBoardLog : public Callback {
 public:
  // `resumed`: the run goes on from a checkpoint, so its config and hyper-parameters are logged already.
  TensorBoardLog(const std::filesystem::path& run_dir, const Config& config, bool resumed);
  void on_batch_end(int64_t step, const std::function<EpochLogs()>& running, FitState& s) override;
  void on_epoch_end(int64_t epoch, const EpochLogs& logs, FitState& s) override;
  // The run's end: the figures it wrote in `run_dir` as images at its last epoch, and its
  // hyper-parameters' session closed as a success or a failure.
  void finish(int64_t epochs, bool success);

 private:
  EventFile& file(std::unique_ptr<EventFile>& f, const char* name);  // opened when first written
  std::filesystem::path run_dir_, dir_;
  const TensorBoardConfig& config_;
  std::unique_ptr<EventFile> train_, validation_, test_, hparams_;
};

// The hyper-parameters TensorBoard shows for a config: every number, string and true/false in its
// resolved JSON, named by its path ("training.optimizer.learning_rate", "model.layers[1].units").
std::map<std::string, EventFile::HParam> hparams_of(const Config& config);

}  // namespace mnist
