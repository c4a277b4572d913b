#!/usr/bin/env bash
# The one test command for meshql.
#
#   scripts/test.sh [PYTEST_ARGS...]
#
# Runs, in order, and stops at the first failure (non-zero exit):
#   1. cargo fmt --check           4. cargo build (binaries)
#   2. a cargo tree guard (no      5. cargo test
#      full-DFA regex builder)     6. the Python end-to-end tests (tests/python) against
#   3. cargo clippy -D warnings       the freshly built `meshql` binary, in a cached virtualenv
#                                     (installing Debian's chromium + chromium-driver for the
#                                     browser test when they are missing)
#
# Works non-interactively (CI=true, no stdin) on a machine with Rust (rustfmt + clippy),
# Python 3.11+ with pip/venv, and a C compiler. Any arguments are passed on to pytest,
# e.g. `scripts/test.sh -k auth -v`.
#
# Environment:
#   CARGO_TARGET_DIR   build directory        (default: $HOME/.cache/meshql-target)
#   CARGO_BUILD_JOBS   parallel rustc jobs    (default: 2)
#   MESHQL_VENV        Python virtualenv      (default: $HOME/.cache/meshql-venv)
#   PYTHON             interpreter for venv   (default: python3)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$PWD"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meshql-target}"
# Cargo resolves a relative target dir against the working directory; make it absolute so
# MESHQL_BIN below points at the same place.
case "$CARGO_TARGET_DIR" in
  /*) ;;
  *) CARGO_TARGET_DIR="$REPO_ROOT/$CARGO_TARGET_DIR" ;;
esac
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"
export PIP_NO_INPUT=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

MESHQL_VENV="${MESHQL_VENV:-$HOME/.cache/meshql-venv}"
PYTHON="${PYTHON:-python3}"
REQUIREMENTS="tests/python/requirements.txt"

CURRENT_STEP="setup"
START_SECONDS=$SECONDS

section() {
  CURRENT_STEP="$*"
  printf '\n==> %s\n' "$*"
}

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

on_exit() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    printf '\n==> FAILED (exit %d) during: %s\n' "$rc" "$CURRENT_STEP" >&2
  fi
}
trap on_exit EXIT

# ---------------------------------------------------------------------------------------------
section "Checking tools"
command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust from https://rustup.rs"
cargo fmt --version >/dev/null 2>&1 \
  || die "rustfmt is missing; run: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 \
  || die "clippy is missing; run: rustup component add clippy"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; install Python 3.11 or newer"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || die "$PYTHON is $("$PYTHON" -V 2>&1); Python 3.11 or newer is required (set PYTHON=...)"
cargo --version
"$PYTHON" --version
echo "CARGO_TARGET_DIR=$CARGO_TARGET_DIR  CARGO_BUILD_JOBS=$CARGO_BUILD_JOBS  MESHQL_VENV=$MESHQL_VENV"

# ---------------------------------------------------------------------------------------------
section "cargo fmt --all --check"
cargo fmt --all --check

section "cargo tree: regexes are not built as full DFAs"
# arrow compiles a LIKE pattern for every batch; with regex-automata's `dfa-build` on (e.g. via
# tracing-subscriber's `env-filter`), each compile builds a full DFA and LIKE queries run ~2x
# slower (BENCHMARKS.md item 23).
if cargo tree --workspace -e features,normal -i regex-automata | grep -q 'feature "dfa-build"'; then
  cargo tree --workspace -e features,normal -i regex-automata | grep -B2 -A8 'feature "dfa-build"' >&2
  die "a dependency turns on regex-automata's dfa-build (see above)"
fi

section "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo build --workspace --bins"
cargo build --workspace --bins

section "cargo test --workspace"
cargo test --workspace

MESHQL_BIN="$CARGO_TARGET_DIR/debug/meshql"
[[ -x "$MESHQL_BIN" ]] || die "expected the meshql binary at $MESHQL_BIN after the build"

# ---------------------------------------------------------------------------------------------
section "Python virtualenv ($MESHQL_VENV)"
# The venv is keyed on the requirements file and the interpreter version; when either changes it
# is rebuilt from scratch so stale packages never linger.
wanted_stamp="$("$PYTHON" - "$REQUIREMENTS" <<'PY'
import hashlib, sys
with open(sys.argv[1], "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
print(f"{digest} python-{sys.version_info[0]}.{sys.version_info[1]}")
PY
)"
stamp_file="$MESHQL_VENV/.meshql-requirements.stamp"
current_stamp="$(cat "$stamp_file" 2>/dev/null || true)"

if [[ "$current_stamp" == "$wanted_stamp" ]] && "$MESHQL_VENV/bin/python" -c '' 2>/dev/null; then
  echo "reusing virtualenv (requirements unchanged)"
else
  if [[ -e "$MESHQL_VENV" ]]; then
    echo "requirements changed or virtualenv incomplete; recreating it"
    rm -rf "$MESHQL_VENV"
  fi
  mkdir -p "$(dirname "$MESHQL_VENV")"
  "$PYTHON" -m venv "$MESHQL_VENV" \
    || die "could not create a virtualenv with '$PYTHON -m venv' (on Debian/Ubuntu: apt-get install python3-venv)"
  "$MESHQL_VENV/bin/python" -m pip install --quiet -r "$REQUIREMENTS"
  # Written last: an interrupted install leaves no stamp and is redone next time.
  printf '%s\n' "$wanted_stamp" >"$stamp_file"
  echo "virtualenv ready"
fi

# ---------------------------------------------------------------------------------------------
# The browser test (tests/python/test_ui.py) drives Debian's Chromium through its chromedriver.
section "Chromium for the browser test"
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "chromium and chromedriver already installed"
else
  command -v apt-get >/dev/null 2>&1 \
    || die "chromium and chromedriver are missing and apt-get is not available; install them (Debian: chromium chromium-driver)"
  SUDO=""
  if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "installing chromium needs root (apt-get install chromium chromium-driver)"
    SUDO="sudo -n"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi

# ---------------------------------------------------------------------------------------------
section "pytest tests/python"
export MESHQL_BIN
echo "MESHQL_BIN=$MESHQL_BIN"
"$MESHQL_VENV/bin/python" -m pytest tests/python -q "$@"

# ---------------------------------------------------------------------------------------------
# TPC-H harness smoke run (benches/tpch): SF 0.01, one iteration, every engine that installs,
# with the debug binaries built above, in its own virtualenv (benches/tpch/requirements.txt,
# $MESHQL_BENCH_VENV). Fails only if it cannot run or a meshql answer differs from the
# reference engine's; timings are never asserted. Skip with MESHQL_SKIP_BENCH_SMOKE=1.
section "TPC-H harness smoke (benches/tpch/bench.sh --smoke)"
if [[ "${MESHQL_SKIP_BENCH_SMOKE:-0}" == "1" ]]; then
  echo "skipped (MESHQL_SKIP_BENCH_SMOKE=1)"
else
  MESHQL_BENCH_PROFILE=debug MESHQL_BENCH_SKIP_BUILD=1 timeout 900 benches/tpch/bench.sh --smoke \
    --data "$CARGO_TARGET_DIR/tpch-smoke-data" --out "$CARGO_TARGET_DIR/tpch-smoke-results"
fi

CURRENT_STEP="done"
printf '\n==> All checks passed in %ds\n' "$((SECONDS - START_SECONDS))"
