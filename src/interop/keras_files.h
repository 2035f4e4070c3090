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

// What is asked of a .weights.h5 file: per layer its slot, its name for messages ("dense (Dense)")
// and the shapes of the arrays it expects, in order.
struct KerasH5Request {
  std::string slot, layer;
  std::vector<std::vector<int64_t>> shapes;
};
struct KerasH5Contents {
  // Per request: nullopt when the file has no group layers/<slot>/vars. An array whose shape is not
  // the expected one comes back with its shape and no values (it is never read or allocated).
  std::vector<std::optional<std::vector<KerasArray>>> layers;
  std::vector<std::string> slots_with_arrays;  // every slot whose vars group holds an array
};
// Reads `bytes` (a .weights.h5 file; `name` stands for it in every message) in a child process:
// libhdf5 has crashed on corrupt files before (several CVEs), and a crash, a hang past a minute or
// an allocation failure there becomes one std::runtime_error here, never the end of this process.
// Throws too when a layer's array count is not its request's.
KerasH5Contents read_keras_weights_h5(const std::string& bytes, const std::string& name, const std::vector<KerasH5Request>& requests);

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


}  // namespace mnist
