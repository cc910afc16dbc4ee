#!/usr/bin/env bash
# Go's own transparency-log packages (golang.org/x/mod/sumdb/note and sumdb/tlog) verify a log
# export through docs/examples/tlogcheck, the program docs/auditing.md gives auditors: the
# export as served over HTTP, its consistency with a saved checkpoint of a new (empty) log and
# one entry's inclusion; a new log's own checkpoint; a size-0 checkpoint with a wrong root
# refused; and, with ONBOARD_BIN set, the export's checkpoint cosigned by `onboard witness`
# (note.Open must skip the cosignature line of a key it does not know, so it must be well formed).
#
#   [ONBOARD_BIN=target/debug/onboard] go_tlogcheck.sh EXPORT_DIR KEY_FILE VKEY_FILE
#
# Needs Go and golang.org/x/mod from Debian (golang-go, golang-golang-x-mod-dev: GOPATH mode,
# no module download) and python3 with `cryptography` (tests/interop/empty_checkpoint.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export_dir=$1 key=$2 vkey=$(cat "$3")
work=$(mktemp -d)
servers=()
cleanup() {
  for pid in "${servers[@]}"; do kill "$pid" 2> /dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/go/src/tlogcheck"
cp "$here/../../docs/examples/tlogcheck/main.go" "$work/go/src/tlogcheck/"
(cd "$work/go/src/tlogcheck" && GO111MODULE=off GOPATH="$work/go:/usr/share/gocode" \
  GOCACHE="$work/cache" go build -o "$work/tlogcheck" .)

# Serves DIR on a free loopback port and sets `url` to its base URL (in this shell, not a
# command substitution's, so that `servers` keeps the pid for the clean-up).
serve() {
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$1" > /dev/null 2>&1 &
  servers+=($!)
  for _ in $(seq 50); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/checkpoint" 2> /dev/null && break
    sleep 0.1
  done
  url="http://127.0.0.1:$port/"
}

mkdir -p "$work/empty" "$work/wrong"
python3 "$here/empty_checkpoint.py" "$key" > "$work/empty/checkpoint"
python3 "$here/empty_checkpoint.py" "$key" "$(python3 -c 'import base64; print(base64.b64encode(bytes(32)).decode())')" \
  > "$work/wrong/checkpoint"
serve "$export_dir" && log=$url
serve "$work/empty" && empty=$url
serve "$work/wrong" && wrong=$url

out=$("$work/tlogcheck" "$log" "$vkey" "$work/empty/checkpoint" 3)
grep -q "consistent with the saved checkpoint of 0 entries" <<< "$out" || { echo "$out"; exit 1; }
grep -Eq "^([0-9]+)/\1 entries valid$" <<< "$out" || { echo "$out"; exit 1; }
"$work/tlogcheck" "$empty" "$vkey" | grep -q "^0/0 entries valid$"
if "$work/tlogcheck" "$wrong" "$vkey" > /dev/null 2>&1; then
  echo "a checkpoint of 0 entries with a wrong root was accepted"
  exit 1
fi

if [ -n "${ONBOARD_BIN:-}" ]; then
  "$ONBOARD_BIN" witness keygen --name witness.test/w1 --out "$work/witness.key" > /dev/null
  "$ONBOARD_BIN" witness --listen 127.0.0.1:0 --key "$work/witness.key" \
    --state-dir "$work/witness" --log "$(head -1 "$export_dir/checkpoint")=$vkey" \
    > "$work/witness.out" 2>&1 &
  servers+=($!)
  for _ in $(seq 50); do
    witness=$(grep -so 'http://[0-9.:]*' "$work/witness.out" || true)
    [ -n "$witness" ] && break
    sleep 0.1
  done
  cp -r "$export_dir" "$work/cosigned"
  { printf 'old 0\n\n'; cat "$export_dir/checkpoint"; } \
    | curl -fsS -X POST --data-binary @- "$witness/add-checkpoint" >> "$work/cosigned/checkpoint"
  [ "$(grep -c '^— witness.test/w1 ' "$work/cosigned/checkpoint")" = 1 ]
  serve "$work/cosigned" && cosigned=$url
  "$work/tlogcheck" "$cosigned" "$vkey" | grep -Eq "^([0-9]+)/\1 entries valid$"
fi
echo "go tlogcheck: all passed ($(grep -E 'entries valid$' <<< "$out")${ONBOARD_BIN:+, cosigned too})"
