#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds in release mode with
# testing enabled (the numeric tests are 10-50x slower in debug), runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Tools/install-deps.sh --python
swift build -c release -Xswiftc -enable-testing --build-tests
swift test -c release -Xswiftc -enable-testing --skip-build "$@"
