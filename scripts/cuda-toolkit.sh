# cuda-toolkit.sh, sourced by cuda-build.sh and gpu.sh: sets cuda_root (the CUDA toolkit's folder,
# as nvcc itself reports it: nvcc on PATH may be a link or a wrapper script) and nvcc (its compiler),
# from nvcc on PATH or else /usr/local/cuda/bin/nvcc. Exits with one line when there is none.
nvcc=$(command -v nvcc || true)
[ -n "$nvcc" ] || nvcc=/usr/local/cuda/bin/nvcc
[ -x "$nvcc" ] || { echo "$(basename "$0"): no nvcc on PATH or in /usr/local/cuda/bin: install CUDA's compiler" >&2; exit 1; }
cuda_root=$(readlink -f "$("$nvcc" --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p')")
nvcc="$cuda_root/bin/nvcc"
[ -x "$nvcc" ] || { echo "$(basename "$0"): could not find the CUDA toolkit's folder from nvcc --dryrun" >&2; exit 1; }
# Whether the build in $1 was configured with CUDA (MNIST_WITH_CUDA on every layer's flags).
configured_with_cuda() { grep -q MNIST_WITH_CUDA "$1/src/app/CMakeFiles/mnist_app.dir/flags.make"; }
