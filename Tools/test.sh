#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds in release mode with
# testing enabled (the numeric tests are 10-50x slower in debug), runs every test,
# then the bad-input suite and the feature extractor's tests (Python; they run the built unseg binary).
set -euo pipefail
cd "$(dirname "$0")/.."
bash Tools/install-deps.sh --python
swift build -c release -Xswiftc -enable-testing --build-tests
swift test -c release -Xswiftc -enable-testing --skip-build "$@"
export UNSEG_BIN="${UNSEG_BIN:-$PWD/.build/release/unseg}"
# Bad input through the binary: every case checks the exit code, the message, leftovers and that inputs are untouched.
python3 -m pytest -q -p no:cacheprovider Tests/BadInput
python3 -m pytest -q -p no:cacheprovider Tools/unseg-extract/tests
