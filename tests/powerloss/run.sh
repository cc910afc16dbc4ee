#!/usr/bin/env bash
# Power-cut simulation for the audit log: appends run on a FUSE file system that keeps file
# contents in memory until fsync (lossyfs.py); the FUSE server is SIGKILLed mid-append (the power
# cut), then the log is opened from what reached the backing directory and every acknowledged
# entry must be there. Needs root, /dev/fuse and python3-fusepy (apt-get install -y
# python3-fusepy). Usage: tests/powerloss/run.sh [TRIALS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
trials=${1:-10}
bin=$(cargo test -p audit-log --test durable --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="durable":
        print(m["executable"])')
work=$(mktemp -d)
lost_trials=0
for t in $(seq 1 "$trials"); do
  rm -rf "$work/back" "$work/mnt" "$work/acks"
  mkdir -p "$work/back" "$work/mnt"
  /usr/bin/python3 tests/powerloss/lossyfs.py "$work/back" "$work/mnt" 2> "$work/fs.log" &
  fs=$!
  for _ in $(seq 50); do mountpoint -q "$work/mnt" && break; sleep 0.1; done
  AUDIT_POWER_CUT_LOG="$work/mnt/log" AUDIT_POWER_CUT_ACKS="$work/acks" \
    "$bin" --exact power_cut_appender --ignored --nocapture > "$work/app.log" 2>&1 &
  app=$!
  sleep "$(python3 -c 'import random; print(round(random.uniform(1.5, 4.0), 2))')"
  kill -9 "$fs"            # the power cut: nothing more reaches the backing directory
  cut_at=$(date +%s%N)
  kill -9 "$app" 2>/dev/null || true
  wait "$fs" "$app" 2>/dev/null || true
  umount -l "$work/mnt" 2>/dev/null || true
  if AUDIT_POWER_CUT_LOG="$work/back/log" AUDIT_POWER_CUT_ACKS="$work/acks" \
      "$bin" --exact power_cut_check --ignored --nocapture > "$work/check.log" 2>&1; then
    echo "trial $t: ok: $(grep -h 'acknowledged' "$work/check.log" | head -1)"
  else
    lost_trials=$((lost_trials + 1))
    echo "trial $t: FAILED: $(grep -h 'acknowledged\|panicked\|lost\|open' "$work/check.log" | head -2 | tr '\n' ' ')"
    echo "  cut at $cut_at; last acks: $(tail -3 "$work/acks" | tr '\n' ' ')"
    cp -r "$work" "/tmp/powerloss-trial-$t" 2>/dev/null || true
  fi
done
rm -rf "$work"
echo "$((trials - lost_trials)) passed, $lost_trials failed"
[ "$lost_trials" -eq 0 ]
