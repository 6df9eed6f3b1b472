#!/usr/bin/env bash
# Create .venv (if absent) and install scnn with its pinned dependencies (if they changed).
# Sourced by main.sh and test.sh; safe to run again: it reinstalls only when
# requirements.txt or setup.cfg changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating virtual environment in $venv"
    "$python" -m venv "$venv"
fi
stamp="$venv/.scnn-installed"
wanted="$(cat "$root/requirements.txt" "$root/requirements-nodeps.txt" "$root/setup.cfg" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    echo "[setup] installing requirements (torch==2.13.0 CPU build, snntorch, librosa, ...)"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r "$root/requirements.txt"
    "$venv/bin/python" -m pip install --quiet --no-deps -r "$root/requirements-nodeps.txt"
    "$venv/bin/python" -m pip install --quiet --no-deps -e "$root"
    echo "$wanted" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
