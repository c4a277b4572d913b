#!/usr/bin/env bash
# The TPC-H harness in one command: builds meshql and the in-process runner, prepares the
# benchmark virtualenv (benches/tpch/requirements.txt), generates the data mesh if missing,
# runs every engine and writes the report.
#
#   benches/tpch/bench.sh                          # SF1, 1 warm-up + 3 iterations, extras
#   benches/tpch/bench.sh --publish                # ...and update BENCHMARKS.md + its chart
#   benches/tpch/bench.sh --sf 0.1 --iterations 5  # any run.py option (run.py --help)
#   benches/tpch/bench.sh --smoke                  # SF 0.01, 1 iteration (what scripts/test.sh runs)
#
# Environment:
#   CARGO_TARGET_DIR       build directory            (default: $HOME/.cache/meshql-target)
#   MESHQL_BENCH_PROFILE   release | debug            (default: release; the smoke test uses debug)
#   MESHQL_BENCH_VENV      benchmark virtualenv       (default: $HOME/.cache/meshql-bench-venv)
#   MESHQL_BENCH_SKIP_BUILD=1  use the binaries already in $CARGO_TARGET_DIR/$PROFILE
#   PYTHON                 interpreter for the venv   (default: python3)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO_ROOT="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meshql-target}"
case "$CARGO_TARGET_DIR" in
  /*) ;;
  *) CARGO_TARGET_DIR="$REPO_ROOT/$CARGO_TARGET_DIR" ;;
esac
PROFILE="${MESHQL_BENCH_PROFILE:-release}"
VENV="${MESHQL_BENCH_VENV:-$HOME/.cache/meshql-bench-venv}"
PYTHON="${PYTHON:-python3}"
REQUIREMENTS="benches/tpch/requirements.txt"
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

case "$PROFILE" in
  release) cargo_profile=(--release) ;;
  debug) cargo_profile=() ;;
  *) echo "error: MESHQL_BENCH_PROFILE must be release or debug, not '$PROFILE'" >&2; exit 2 ;;
esac

if [[ "${MESHQL_BENCH_SKIP_BUILD:-0}" == "1" ]]; then
  echo "==> using the $PROFILE binaries already built (MESHQL_BENCH_SKIP_BUILD=1)"
else
  echo "==> building meshql and tpch_inprocess ($PROFILE)"
  cargo build "${cargo_profile[@]}" -p meshql-cli --bin meshql \
    -p meshql-benches --bin tpch_inprocess
fi
for bin in meshql tpch_inprocess; do
  [[ -x "$CARGO_TARGET_DIR/$PROFILE/$bin" ]] \
    || { echo "error: $CARGO_TARGET_DIR/$PROFILE/$bin is missing; build it first" >&2; exit 1; }
done

echo "==> benchmark virtualenv ($VENV)"
wanted_stamp="$("$PYTHON" - "$REQUIREMENTS" <<'PY'
import hashlib, sys
with open(sys.argv[1], "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
print(f"{digest} python-{sys.version_info[0]}.{sys.version_info[1]}")
PY
)"
stamp_file="$VENV/.meshql-bench-requirements.stamp"
if [[ "$(cat "$stamp_file" 2>/dev/null || true)" == "$wanted_stamp" ]] && "$VENV/bin/python" -c '' 2>/dev/null; then
  echo "reusing virtualenv (requirements unchanged)"
else
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
  # ROAPI ships as a binary wheel that may not exist for every platform: install it on its own
  # so that the harness still runs (and says it skipped ROAPI) without it.
  grep -v '^roapi==' "$REQUIREMENTS" >"$VENV/requirements-core.txt"
  "$VENV/bin/python" -m pip install --quiet -r "$VENV/requirements-core.txt"
  "$VENV/bin/python" -m pip install --quiet "$(grep '^roapi==' "$REQUIREMENTS")" \
    || echo "warning: roapi could not be installed here; the harness will skip it"
  printf '%s\n' "$wanted_stamp" >"$stamp_file"
  echo "virtualenv ready"
fi

echo "==> harness"
exec "$VENV/bin/python" benches/tpch/run.py \
  --meshql "$CARGO_TARGET_DIR/$PROFILE/meshql" \
  --inprocess "$CARGO_TARGET_DIR/$PROFILE/tpch_inprocess" "$@"
