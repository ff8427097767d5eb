#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds in release mode with
# testing enabled (the numeric tests are 10-50x slower in debug), runs every test,
# then the bad-input suite and the feature extractor's tests (Python; they run the built unseg binary).
# Open MPI is installed too: the MPI tests run the binary under mpirun (-np 2, -np 3, two network
# namespaces as two hosts when the machine allows it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash Tools/install-deps.sh --python --mpi
swift build -c release -Xswiftc -enable-testing --build-tests
swift test -c release -Xswiftc -enable-testing --skip-build "$@"
export UNSEG_BIN="${UNSEG_BIN:-$PWD/.build/release/unseg}"
# Bad input through the binary: every case checks the exit code, the message, leftovers and that inputs are untouched.
python3 -m pytest -q -p no:cacheprovider Tests/BadInput
python3 -m pytest -q -p no:cacheprovider Tools/unseg-extract/tests
