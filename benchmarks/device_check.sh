#!/usr/bin/env bash
# The device check for an accelerator session (benchmarks/device_check.py says what it measures).
# With the `device` tool, from the repository root:  run(command="bash benchmarks/device_check.sh", timeout_s=540)
# Results come back from $OUT: device_check.md, device_check.json, device_check.log. Extra arguments go to
# the script (e.g. --no-tests); without $OUT the results go to ./device_check_out.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-device_check_out}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/device_check.log"
timeout 500 "${PYTHON:-python3}" benchmarks/device_check.py --out "$out" "$@" 2>&1 | tee -a "$out/device_check.log"
