// keras_files: the containers of Keras 3's own files, read and written through libhdf5 and libzip.
//   .weights.h5  HDF5: per layer a group layers/<slot>/vars (attribute "name": the layer's name)
//                holding datasets "0", "1", ... in the layer's variable order, where <slot> is the
//                layer's class name in snake case, numbered within the model ("dense", "dense_1");
//                optimizer/vars and the model's own vars group besides.
//   .keras       zip (stored): metadata.json, config.json (the model's serialised config, see
//                keras_config.h) and model.weights.h5 (the layout above).
// This module knows bytes, groups and arrays; which arrays a layer holds is keras_import's.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mnist {

// One stored array, converted to float32 (Keras stores float32; float16/64 are converted).
struct KerasArray {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// A .weights.h5 file in memory. `name` stands for the file in every error message (std::runtime_error).
class KerasWeightsH5 {
 public:
  KerasWeightsH5(const std::string& bytes, const std::string& name);
  ~KerasWeightsH5();
  KerasWeightsH5(const KerasWeightsH5&) = delete;
  KerasWeightsH5& operator=(const KerasWeightsH5&) = delete;

  // The slots under layers/ whose vars group holds at least one array, in name order.
  std::vector<std::string> slots_with_arrays() const;
  // The arrays of layers/<slot>/vars, in order; nullopt when the file has no such group. Throws when
  // their number is not expected.size() (`layer` names the config's layer in the message). An array
  // whose shape is not the expected one comes back with its shape and no values, unread.
  std::optional<std::vector<KerasArray>> layer_arrays(const std::string& slot, const std::vector<std::vector<int64_t>>& expected,
                                                      const std::string& layer) const;

 private:
  int64_t file_;  // hid_t
  std::string name_;
};

// A .weights.h5 file holding, per slot, its layer's name and arrays (slots without arrays too).
struct KerasLayerArrays {
  std::string slot, layer_name;
  std::vector<KerasArray> arrays;
};
std::string write_keras_weights_h5(const std::vector<KerasLayerArrays>& layers, const std::string& model_name);

// Zip archives: the named entries of `bytes` (each at most `max_entry_bytes` uncompressed, CRC
// checked), and an archive of stored (uncompressed) entries, as Keras writes them.
std::map<std::string, std::string> read_zip_entries(const std::string& bytes, const std::vector<std::string>& entries,
                                                    const std::string& name, int64_t max_entry_bytes);
std::string write_zip(const std::vector<std::pair<std::string, std::string>>& entries);

// Keras's slot name for a class: keras.src.utils.naming.to_snake_case ("MaxPooling2D" -> "max_pooling2d").
std::string keras_snake_case(const std::string& class_name);

}  // namespace mnist
