// keras_files: HDF5 (libhdf5's C API, on in-memory file images) and zip (libzip) for Keras's files.
#include "interop/keras_files.h"

#include <memory>
#include <stdexcept>

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#ifdef MNIST_WITH_KERAS_FILES
#include <hdf5.h>
#include <zip.h>

// Present only in sanitizer builds (and so in the fuzzers), where it is the runtime's own.
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));
#endif

namespace mnist {

#ifdef MNIST_WITH_KERAS_FILES
namespace {

// No Keras array has more dimensions than a Conv2D kernel (4); a file that claims more is foreign.
constexpr int kMaxRank = 8;

// Closes an HDF5 handle with its own close function when it goes out of scope.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// HDF5 prints its error stack to stderr by default; every failure here becomes one exception
// instead. It would also load filter plugins from the host's directories for a dataset that names
// an unknown filter: never here (Keras writes no filters, and a model file must not pick code).
void set_up_hdf5() {
  static const bool done = [] { return H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) >= 0 && H5PLset_loading_state(0) >= 0; }();
  (void)done;
}

// ---- a model file holds its own data ----
// An HDF5 file can point outside itself: a link to an object of another file (an external or a
// user-defined link), a dataset whose values lie in other files (external storage), or one made of
// other files' datasets (a virtual dataset). A model file is data from strangers, so each is
// refused before libhdf5 follows it; so are soft links (Keras writes none).

[[noreturn]] void refuse_pointer(const std::string& name, const std::string& path, const std::string& what) {
  throw std::runtime_error(name + ": " + path + " " + what + "; a model file must hold its own data, so it is refused (save the weights again with Keras's model.save_weights)");
}

std::string link_kind(H5L_type_t type) {
  switch (type) {
    case H5L_TYPE_SOFT: return "is a soft link";
    case H5L_TYPE_EXTERNAL: return "is an external link (to an object of another file)";
    default: return "is a user-defined link";
  }
}

// Whether `path` names an object of the file through hard links only (refusing any other link
// on the way, before it is followed).
bool has_link(hid_t location, const std::string& path, const std::string& name) {
  // H5Lexists needs every component before the last to exist: check them one by one.
  size_t end = 0;
  do {
    end = path.find('/', end + 1);
    const std::string prefix = path.substr(0, end);
    H5L_info_t info;
    if (H5Lexists(location, prefix.c_str(), H5P_DEFAULT) <= 0 || H5Lget_info(location, prefix.c_str(), &info, H5P_DEFAULT) < 0) return false;
    if (info.type != H5L_TYPE_HARD) refuse_pointer(name, prefix, link_kind(info.type));
  } while (end != std::string::npos);
  return true;
}

// Refuses a dataset whose values are not stored in the file itself, before anything reads them.
void check_stored_inside(hid_t dataset, const std::string& name, const std::string& path) {
  Handle create(H5Dget_create_plist(dataset), H5Pclose);
  if (!create.ok()) throw std::runtime_error(name + ": " + path + " cannot be read: the file is truncated or corrupt");
  const H5D_layout_t layout = H5Pget_layout(create.get());
  if (layout == H5D_VIRTUAL) refuse_pointer(name, path, "is a virtual dataset (made of datasets of other files)");
  if (H5Pget_external_count(create.get()) != 0) refuse_pointer(name, path, "keeps its values in external files");
  if (layout != H5D_CONTIGUOUS && layout != H5D_CHUNKED && layout != H5D_COMPACT)
    throw std::runtime_error(name + ": " + path + " has a storage layout this reader does not know");
}

bool is_group(hid_t location, const std::string& path, const std::string& name) {
  if (!has_link(location, path, name)) return false;
  H5O_info_t info;
  return H5Oget_info_by_name(location, path.c_str(), &info, H5P_DEFAULT) >= 0 && info.type == H5O_TYPE_GROUP;
}

// The vars group of a slot: layers/<slot>/vars, or where Keras 2.13 put it.
std::optional<std::string> vars_path(hid_t file, const std::string& slot, const std::string& name) {
  for (const char* root : {"layers/", "_layer_checkpoint_dependencies/"}) {
    const std::string path = root + slot + "/vars";
    if (is_group(file, path, name)) return path;
  }
  return std::nullopt;
}

hsize_t link_count(hid_t group) {
  H5G_info_t info;
  return H5Gget_info(group, &info) >= 0 ? info.nlinks : 0;
}

std::string zip_message(zip_error_t& error) {
  std::string message = zip_error_strerror(&error);
  zip_error_fini(&error);
  return message;
}

// Every slot under layers/ whose vars group holds at least one array.
std::vector<std::string> slots_with_arrays(hid_t file, const std::string& name) {
  std::vector<std::string> slots;
  for (const char* root : {"layers", "_layer_checkpoint_dependencies"}) {
    if (!is_group(file, root, name)) continue;
    Handle group(H5Gopen2(file, root, H5P_DEFAULT), H5Gclose);
    if (!group.ok()) continue;
    const hsize_t n = link_count(group.get());
    for (hsize_t i = 0; i < n; ++i) {
      char buffer[256];
      const ssize_t size = H5Lget_name_by_idx(group.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, buffer, sizeof buffer, H5P_DEFAULT);
      if (size <= 0 || size >= static_cast<ssize_t>(sizeof buffer)) continue;
      const auto vars = vars_path(file, buffer, name);
      if (!vars) continue;
      Handle group_of_vars(H5Gopen2(file, vars->c_str(), H5P_DEFAULT), H5Gclose);
      if (group_of_vars.ok() && link_count(group_of_vars.get()) > 0) slots.emplace_back(buffer);
    }
  }
  return slots;
}

// The arrays of one layer's vars group (see KerasH5Contents).
std::optional<std::vector<KerasArray>> layer_arrays(hid_t file, const KerasH5Request& request, const std::string& name) {
  const auto vars = vars_path(file, request.slot, name);
  if (!vars) return std::nullopt;
  Handle group(H5Gopen2(file, vars->c_str(), H5P_DEFAULT), H5Gclose);
  const hsize_t n = group.ok() ? link_count(group.get()) : 0;
  if (n != request.shapes.size())
    throw std::runtime_error(name + ": " + *vars + " holds " + std::to_string(n) + " arrays where the config's " + request.layer +
                             " needs " + std::to_string(request.shapes.size()));
  std::vector<KerasArray> arrays;
  for (size_t i = 0; i < request.shapes.size(); ++i) {
    const std::string where = name + ": " + *vars + "/" + std::to_string(i);
    if (!has_link(file, *vars + "/" + std::to_string(i), name))
      throw std::runtime_error(where + " is missing: the group's arrays are not numbered 0.." + std::to_string(n - 1));
    Handle dataset(H5Dopen2(group.get(), std::to_string(i).c_str(), H5P_DEFAULT), H5Dclose);
    if (!dataset.ok()) throw std::runtime_error(where + " is not a dataset");
    check_stored_inside(dataset.get(), name, *vars + "/" + std::to_string(i));
    Handle type(H5Dget_type(dataset.get()), H5Tclose);
    if (!type.ok() || H5Tget_class(type.get()) != H5T_FLOAT) throw std::runtime_error(where + " does not hold floating-point numbers");
    Handle space(H5Dget_space(dataset.get()), H5Sclose);
    const int rank = space.ok() ? H5Sget_simple_extent_ndims(space.get()) : -1;
    if (rank < 0 || rank > kMaxRank) throw std::runtime_error(where + " has no simple shape of at most " + std::to_string(kMaxRank) + " dimensions");
    hsize_t dims[kMaxRank];
    H5Sget_simple_extent_dims(space.get(), dims, nullptr);
    KerasArray array;
    array.shape.assign(dims, dims + rank);
    if (array.shape == request.shapes[i]) {  // checked first: a shape the config does not expect is never allocated
      int64_t count = 1;
      for (int64_t d : array.shape) count *= d;
      array.values.resize(static_cast<size_t>(count));
      if (count > 0 && H5Dread(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, array.values.data()) < 0)
        throw std::runtime_error(where + " cannot be read: the file is truncated or corrupt");
    }
    arrays.push_back(std::move(array));
  }
  return arrays;
}

KerasH5Contents read_in_this_process(const std::string& bytes, const std::string& name, const std::vector<KerasH5Request>& requests) {
  set_up_hdf5();
  Handle access(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // The core driver opens the bytes in memory; backing_store=0: nothing is ever written back.
  if (!access.ok() || H5Pset_fapl_core(access.get(), /*increment=*/1 << 20, /*backing_store=*/0) < 0 ||
      H5Pset_file_image(access.get(), const_cast<char*>(bytes.data()), bytes.size()) < 0)
    throw std::runtime_error("HDF5 could not take " + name + " into memory");
  Handle file(H5Fopen("keras.weights.h5", H5F_ACC_RDONLY, access.get()), H5Fclose);
  if (!file.ok())
    throw std::runtime_error(name + " is not an HDF5 file, or is truncated: Keras writes its weights with model.save_weights(\"x.weights.h5\")");
  if (!is_group(file.get(), "layers", name) && !is_group(file.get(), "_layer_checkpoint_dependencies", name))
    throw std::runtime_error(name + " is an HDF5 file without a layers/ group: not a Keras 3 weights file "
                             "(Keras 2's legacy .h5 layout is not read; load it in Keras 3 and save_weights(\"x.weights.h5\") again)");
  KerasH5Contents contents;
  for (const auto& request : requests) contents.layers.push_back(layer_arrays(file.get(), request, name));
  contents.slots_with_arrays = slots_with_arrays(file.get(), name);
  return contents;
}

// The child's answer, through a pipe: 'E' and a message, or 'O' and the contents.
class Wire {
 public:
  void u64(uint64_t v) { bytes_.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void text(const std::string& t) {
    u64(t.size());
    bytes_ += t;
  }
  void floats(const std::vector<float>& f) {
    u64(f.size());
    if (!f.empty()) bytes_.append(reinterpret_cast<const char*>(f.data()), f.size() * sizeof(float));
  }
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
};

class Unwire {
 public:
  explicit Unwire(const std::string& bytes) : bytes_(bytes) {}
  uint64_t u64() {
    uint64_t v;
    take(&v, sizeof v);
    return v;
  }
  std::string text() {
    std::string t(checked_size(u64(), 1), '\0');
    take(t.data(), t.size());
    return t;
  }
  std::vector<float> floats() {
    std::vector<float> f(checked_size(u64(), sizeof(float)));
    take(f.data(), f.size() * sizeof(float));
    return f;
  }

 private:
  size_t checked_size(uint64_t n, size_t unit) const {
    if (n > (bytes_.size() - at_) / unit) throw std::runtime_error("cut short");
    return static_cast<size_t>(n);
  }
  void take(void* out, size_t n) {
    if (n == 0) return;  // an empty array's data() may be null, which memcpy must not be given
    if (n > bytes_.size() - at_) throw std::runtime_error("cut short");
    std::memcpy(out, bytes_.data() + at_, n);
    at_ += n;
  }
  const std::string& bytes_;
  size_t at_ = 0;
};

std::string encode(const KerasH5Contents& c) {
  Wire w;
  w.bytes() += 'O';
  w.u64(c.layers.size());
  for (const auto& layer : c.layers) {
    w.u64(layer ? 1 : 0);
    if (!layer) continue;
    w.u64(layer->size());
    for (const auto& a : *layer) {
      w.u64(a.shape.size());
      for (int64_t d : a.shape) w.u64(static_cast<uint64_t>(d));
      w.floats(a.values);
    }
  }
  w.u64(c.slots_with_arrays.size());
  for (const auto& slot : c.slots_with_arrays) w.text(slot);
  return std::move(w.bytes());
}

KerasH5Contents decode(const std::string& bytes) {
  Unwire r(bytes);
  KerasH5Contents c;
  c.layers.resize(r.u64());
  for (auto& layer : c.layers) {
    if (!r.u64()) continue;
    layer.emplace(r.u64());
    for (auto& a : *layer) {
      a.shape.resize(r.u64());
      for (auto& d : a.shape) d = static_cast<int64_t>(r.u64());
      a.values = r.floats();
    }
  }
  c.slots_with_arrays.resize(r.u64());
  for (auto& slot : c.slots_with_arrays) slot = r.text();
  return c;
}

void write_all(int fd, const std::string& bytes) {
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

// Seconds the child may take: a valid file of any model here reads in well under one.
constexpr unsigned kChildSeconds = 60;

// The reader's child: reads, answers on `fd` ("O" and the arrays, or "E" and why) and leaves
// without running this process's exit handlers.
[[noreturn]] void answer_in_child(pid_t parent, int fd, const std::string& bytes, const std::string& name, const std::vector<KerasH5Request>& requests) {
  // It ends with its parent, however the parent ends (killed, it would outlive it by up to the alarm).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);
  // A fault here ends the child only, as the kernel ends it: no handler of the parent's (a fuzzer's
  // crash reporter, a sanitizer's death callback) may act for it.
  for (int signal : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGINT, SIGTERM, SIGHUP}) std::signal(signal, SIG_DFL);
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(nullptr);
  ::alarm(kChildSeconds);
  std::string answer;
  try {
    answer = encode(read_in_this_process(bytes, name, requests));
  } catch (const std::exception& e) {
    answer = std::string("E") + e.what();
  }
  write_all(fd, answer);
  ::_exit(0);
}

// Everything the child wrote on `fd`, until it closes it.
std::string read_answer(int fd) {
  std::string answer;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buffer, static_cast<size_t>(n));
  }
  return answer;
}

// How a child that gave no answer ended, for the message.
std::string how_it_ended(int status) {
  if (!WIFSIGNALED(status)) return "failed (exit " + std::to_string(WEXITSTATUS(status)) + ")";
  return WTERMSIG(status) == SIGALRM ? "took over " + std::to_string(kChildSeconds) + " s"
                                     : "crashed (signal " + std::to_string(WTERMSIG(status)) + ")";
}

}  // namespace

KerasH5Contents read_keras_weights_h5(const std::string& bytes, const std::string& name, const std::vector<KerasH5Request>& requests) {
  if (bytes.empty()) throw std::runtime_error(name + " is empty, not an HDF5 weights file");
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("cannot read " + name + ": no pipe for the HDF5 reader (" + std::strerror(errno) + ")");
  const pid_t parent = ::getpid(), child = ::fork();
  if (child < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw std::runtime_error("cannot read " + name + ": no process for the HDF5 reader (" + std::strerror(errno) + ")");
  }
  if (child == 0) {
    ::close(fds[0]);
    answer_in_child(parent, fds[1], bytes, name, requests);
  }
  ::close(fds[1]);
  const std::string answer = read_answer(fds[0]);
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (clean && !answer.empty() && answer[0] == 'E') throw std::runtime_error(answer.substr(1));
  if (clean && !answer.empty() && answer[0] == 'O') {
    try {
      return decode(answer.substr(1));
    } catch (const std::runtime_error&) {
    }
  }
  throw std::runtime_error(name + " is corrupt: libhdf5 " + how_it_ended(status) + " reading it");
}

std::string write_keras_weights_h5(const std::vector<KerasLayerArrays>& layers, const std::string& model_name) {
  set_up_hdf5();
  auto check = [](bool ok, const std::string& what) {
    if (!ok) throw std::runtime_error("HDF5 could not " + what + " while writing Keras weights");
  };
  Handle access(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  check(access.ok() && H5Pset_fapl_core(access.get(), /*increment=*/1 << 20, /*backing_store=*/0) >= 0, "set up a file in memory");
  Handle file(H5Fcreate("keras.weights.h5", H5F_ACC_TRUNC, H5P_DEFAULT, access.get()), H5Fclose);
  check(file.ok(), "create a file in memory");

  // A variable-length UTF-8 string attribute, as h5py writes a Python str.
  Handle string_type(H5Tcopy(H5T_C_S1), H5Tclose);
  check(H5Tset_size(string_type.get(), H5T_VARIABLE) >= 0 && H5Tset_cset(string_type.get(), H5T_CSET_UTF8) >= 0, "make a string type");
  auto vars_group = [&](const std::string& path, const std::string& name) {
    auto group = std::make_unique<Handle>(H5Gcreate2(file.get(), path.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    check(group->ok(), "create " + path);
    Handle scalar(H5Screate(H5S_SCALAR), H5Sclose);
    Handle attribute(H5Acreate2(group->get(), "name", string_type.get(), scalar.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    const char* text = name.c_str();
    check(attribute.ok() && H5Awrite(attribute.get(), string_type.get(), &text) >= 0, "write " + path + "'s name");
    return group;
  };

  Handle(H5Gcreate2(file.get(), "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  for (const auto& layer : layers) {
    const std::string slot = "layers/" + layer.slot;
    Handle(H5Gcreate2(file.get(), slot.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    const auto vars = vars_group(slot + "/vars", layer.layer_name);
    for (size_t i = 0; i < layer.arrays.size(); ++i) {
      const KerasArray& a = layer.arrays[i];
      std::vector<hsize_t> dims(a.shape.begin(), a.shape.end());
      Handle space(a.shape.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
      Handle dataset(H5Dcreate2(vars->get(), std::to_string(i).c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                     H5Dclose);
      check(dataset.ok() && H5Dwrite(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.values.data()) >= 0,
            "write " + slot + "/vars/" + std::to_string(i));
    }
  }
  vars_group("vars", model_name);  // the model's own (empty) variables, as Keras writes them

  check(H5Fflush(file.get(), H5F_SCOPE_GLOBAL) >= 0, "flush the file");
  const ssize_t size = H5Fget_file_image(file.get(), nullptr, 0);
  check(size > 0, "measure the file");
  std::string bytes(static_cast<size_t>(size), '\0');
  check(H5Fget_file_image(file.get(), bytes.data(), bytes.size()) == size, "copy the file out of memory");
  return bytes;
}

std::map<std::string, std::string> read_zip_entries(const std::string& bytes, const std::vector<std::string>& entries,
                                                    const std::string& name, int64_t max_entry_bytes) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* source = zip_source_buffer_create(bytes.data(), bytes.size(), /*freep=*/0, &error);
  if (!source) throw std::runtime_error("libzip could not read " + name + ": " + zip_message(error));
  zip_t* archive = zip_open_from_source(source, ZIP_RDONLY | ZIP_CHECKCONS, &error);
  if (!archive) {
    zip_source_free(source);
    throw std::runtime_error(name + " is not a zip archive (a .keras file is one, written by model.save(\"x.keras\")): " + zip_message(error));
  }
  std::unique_ptr<zip_t, void (*)(zip_t*)> closer(archive, [](zip_t* z) { zip_discard(z); });

  std::map<std::string, std::string> found;
  for (const auto& entry : entries) {
    const zip_int64_t index = zip_name_locate(archive, entry.c_str(), 0);
    if (index < 0) continue;
    zip_stat_t stat;
    zip_stat_init(&stat);
    if (zip_stat_index(archive, static_cast<zip_uint64_t>(index), 0, &stat) < 0 || !(stat.valid & ZIP_STAT_SIZE))
      throw std::runtime_error(name + ": " + entry + " has no readable size in the archive");
    if (stat.size > static_cast<zip_uint64_t>(max_entry_bytes))
      throw std::runtime_error(name + ": " + entry + " is " + std::to_string(stat.size) + " bytes, more than any model here needs (" +
                               std::to_string(max_entry_bytes) + ")");
    std::unique_ptr<zip_file_t, int (*)(zip_file_t*)> file(zip_fopen_index(archive, static_cast<zip_uint64_t>(index), 0), zip_fclose);
    if (!file) throw std::runtime_error(name + ": " + entry + " cannot be opened: " + zip_strerror(archive));
    std::string content(static_cast<size_t>(stat.size), '\0');
    zip_int64_t done = 0;
    while (done < static_cast<zip_int64_t>(content.size())) {
      const zip_int64_t n = zip_fread(file.get(), content.data() + done, content.size() - static_cast<size_t>(done));
      if (n <= 0) break;
      done += n;
    }
    // Reading to the end is what makes libzip compare the CRC; a short or failed read is corruption.
    char extra;
    if (done != static_cast<zip_int64_t>(content.size()) || zip_fread(file.get(), &extra, 1) != 0)
      throw std::runtime_error(name + ": " + entry + " is corrupt (" + zip_file_strerror(file.get()) + ")");
    found[entry] = std::move(content);
  }
  return found;
}

std::string write_zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* buffer = zip_source_buffer_create(nullptr, 0, 0, &error);
  if (!buffer) throw std::runtime_error("libzip could not create an archive: " + zip_message(error));
  zip_t* archive = zip_open_from_source(buffer, ZIP_TRUNCATE, &error);
  if (!archive) {
    zip_source_free(buffer);
    throw std::runtime_error("libzip could not create an archive: " + zip_message(error));
  }
  zip_source_keep(buffer);  // it outlives the archive: the finished bytes are read back from it
  std::unique_ptr<zip_source_t, void (*)(zip_source_t*)> keep(buffer, zip_source_free);
  for (const auto& [entry, content] : entries) {
    zip_source_t* source = zip_source_buffer(archive, content.data(), content.size(), 0);
    const zip_int64_t index = source ? zip_file_add(archive, entry.c_str(), source, ZIP_FL_ENC_UTF_8) : -1;
    if (index < 0) {
      if (source) zip_source_free(source);
      const std::string message = zip_strerror(archive);
      zip_discard(archive);
      throw std::runtime_error("libzip could not add " + entry + " to an archive: " + message);
    }
    zip_set_file_compression(archive, static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0);
  }
  if (zip_close(archive) < 0) {
    const std::string message = zip_strerror(archive);
    zip_discard(archive);
    throw std::runtime_error("libzip could not finish an archive: " + message);
  }
  zip_stat_t stat;
  zip_stat_init(&stat);
  if (zip_source_open(buffer) < 0 || zip_source_stat(buffer, &stat) < 0)
    throw std::runtime_error("libzip could not read back the archive it wrote");
  std::string bytes(static_cast<size_t>(stat.size), '\0');
  const zip_int64_t n = zip_source_read(buffer, bytes.data(), bytes.size());
  zip_source_close(buffer);
  if (n != static_cast<zip_int64_t>(bytes.size())) throw std::runtime_error("libzip could not read back the archive it wrote");
  return bytes;
}

#else  // built with -DMNIST_WITH_KERAS_FILES=OFF

namespace {
[[noreturn]] void unavailable() {
  throw std::runtime_error("this build has no HDF5/libzip (configured with -DMNIST_WITH_KERAS_FILES=OFF): .weights.h5 and .keras "
                           "files are unavailable; use the JSON weights list (FILE.json) instead");
}
}  // namespace

KerasH5Contents read_keras_weights_h5(const std::string&, const std::string&, const std::vector<KerasH5Request>&) { unavailable(); }
std::string write_keras_weights_h5(const std::vector<KerasLayerArrays>&, const std::string&) { unavailable(); }
std::map<std::string, std::string> read_zip_entries(const std::string&, const std::vector<std::string>&, const std::string&, int64_t) {
  unavailable();
}
std::string write_zip(const std::vector<std::pair<std::string, std::string>>&) { unavailable(); }

#endif

}  // namespace mnist
