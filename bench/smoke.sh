#!/usr/bin/env bash
# CI smoke test of the benchmark: every scenario once for about a second against
# Starling and Mosquitto (installed if missing). Fails when a broker crashes or
# a scenario delivers nothing; never on speed. Extra options go to compare.sh
# (e.g. --starling-only where Mosquitto cannot be installed).
set -euo pipefail
exec bash "$(dirname "$0")/compare.sh" --quick "$@"
