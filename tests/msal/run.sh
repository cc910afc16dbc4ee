#!/usr/bin/env bash
# Runs Microsoft's MSAL for Python against the Entra emulator (see msal_check.py).
# Needs python3 with `msal` and `requests` (pip install msal). Exits non-zero on any failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

python3 -c 'import msal, requests' 2>/dev/null || {
    echo "msal check: python package 'msal' is missing (pip install msal)" >&2
    exit 1
}

# ONBOARD_BIN: an onboard binary already built (CI passes the one its workspace tests built, so
# the check does not build the crates a second time with another feature set).
if [ -n "${ONBOARD_BIN:-}" ]; then
    bin="$ONBOARD_BIN"
else
    cargo build --bin onboard
    bin="${CARGO_TARGET_DIR:-$root/target}/debug/onboard"
fi

state="$(mktemp -d)"
log="$state/sim.log"
"$bin" entra-sim --listen 127.0.0.1:0 --state-dir "$state" --device-code-interval-s 1 >"$log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$state"
}
trap cleanup EXIT

base=""
for _ in $(seq 1 300); do
    base="$(sed -n 's/^listening on //p' "$log" | head -n 1)"
    [ -n "$base" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$base" ]; then
    echo "msal check: the emulator did not start" >&2
    cat "$log" >&2
    exit 1
fi
echo "emulator at $base"

python3 "$root/tests/msal/msal_check.py" --base "$base" --ca "$state/ca.pem"
