#!/usr/bin/env bash
# Set up, then run the test suite. Tests that need the real FSDD recordings read
# $SCNN_DATA_DIR (CI points it at ../shared/data/fsdd/recordings) and are skipped
# with a reason if it is unset and no copy is found.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup_env.sh"
cd "$root"
python -m pytest -q "$@"
