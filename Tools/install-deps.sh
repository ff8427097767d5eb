#!/usr/bin/env bash
# Installs what unseg needs on a Debian machine, skipping what is already there:
#   system: OpenBLAS (BLAS), LAPACKE, HDF5 (serial), libpng, pkg-config
#   --python: h5py, numpy, scipy (the test suite cross-checks against them), torch 2.13.0 (CPU),
#             Pillow, tqdm, pytest, and the feature extractor Tools/unseg-extract (reinstalled when
#             its sources are newer than the installed copy)
#   --mpi: Open MPI (openmpi-bin, libopenmpi-dev) for `mpirun -np N unseg ...`; unseg loads it at
#          run time only when mpirun starts it, so a build without it works as before
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python=0
mpi=0
for a in "$@"; do
  case "$a" in
    --python) python=1 ;;
    --mpi) mpi=1 ;;
    *) echo "install-deps: unknown option $a (use --python, --mpi)" >&2; exit 64 ;;
  esac
done
need=()
pkgs=(libopenblas-dev liblapacke-dev libhdf5-dev libpng-dev pkg-config)
((mpi)) && pkgs+=(openmpi-bin libopenmpi-dev)
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "install-deps: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ((python)); then
  pip=(python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore)
  if ! python3 -c "import h5py, numpy, scipy" 2>/dev/null; then
    echo "install-deps: installing h5py numpy scipy (pip)" >&2
    "${pip[@]}" h5py numpy scipy
  fi
  # One interpreter start checks the rest; it prints the pip requirements that are missing.
  missing=$(python3 - <<'EOF'
import importlib.util
from importlib import metadata
need = []
try:
    if not metadata.version("torch").startswith("2.13.0"):
        need.append("torch==2.13.0")
except metadata.PackageNotFoundError:
    need.append("torch==2.13.0")
for module, req in (("PIL", "Pillow"), ("tqdm", "tqdm"), ("pytest", "pytest"), ("setuptools", "setuptools")):
    if importlib.util.find_spec(module) is None:
        need.append(req)
print(" ".join(need))
EOF
)
  if [ -n "$missing" ]; then
    echo "install-deps: installing $missing (pip)" >&2
    # shellcheck disable=SC2086
    "${pip[@]}" $missing
  fi
  # The extractor: (re)install when absent or when a source file is newer than the installed copy.
  pkg="$here/unseg-extract"
  record=$(python3 - <<'EOF'
from importlib import metadata
try:
    d = metadata.distribution("unseg-extract")
    print(d.locate_file(d._path.name) if hasattr(d, "_path") else "")
except metadata.PackageNotFoundError:
    print("")
EOF
)
  if [ -z "$record" ] || [ ! -e "$record" ] || \
     [ -n "$(find "$pkg/pyproject.toml" "$pkg/unseg_extract" -newer "$record" -print -quit 2>/dev/null)" ]; then
    echo "install-deps: installing Tools/unseg-extract (pip)" >&2
    "${pip[@]}" --no-build-isolation --no-deps "$pkg"
  fi
fi
