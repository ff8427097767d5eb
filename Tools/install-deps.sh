#!/usr/bin/env bash
# Installs what unseg needs on a Debian machine, skipping what is already there:
#   system: OpenBLAS (BLAS), LAPACKE, HDF5 (serial), libpng, pkg-config
#   --python: h5py, numpy, scipy (the test suite cross-checks against them)
set -euo pipefail
need=()
for p in libopenblas-dev liblapacke-dev libhdf5-dev libpng-dev pkg-config; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "install-deps: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "${1:-}" = "--python" ]; then
  if ! python3 -c "import h5py, numpy, scipy" 2>/dev/null; then
    echo "install-deps: installing h5py numpy scipy (pip)" >&2
    python3 -m pip install -q --disable-pip-version-check h5py numpy scipy
  fi
fi
