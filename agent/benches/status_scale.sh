#!/usr/bin/env bash
# How long `softadastra status --json` takes on a folder of N files (default
# 200,000 files of 64-163 bytes in 2,000 directories), one agent on
# loopback, discovery off. Prints the time of each of 20 calls, CLI start
# included; then restarts the agent and prints when its control socket
# answered and when a file written then was indexed (counted by `status`). Usage: agent/benches/status_scale.sh [FILES] (after
# `cargo build --release -p softadastra-agent`). Everything is made under a
# new temporary directory and deleted at exit.
set -euo pipefail
files=${1:-200000}
bin=${SOFTADASTRA_BENCH_BIN:-$(dirname "$0")/../../target/release/softadastra}
work=$(mktemp -d)
trap 'kill "$agent" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/docs"
dirs=$(( (files + 99) / 100 ))
for ((d = 0; d < dirs; d++)); do
  mkdir "$work/docs/d$d"
  for ((f = 0; f < 100 && d * 100 + f < files; f++)); do
    printf '%*s' $((64 + f)) '' > "$work/docs/d$d/f$f.txt"
  done
done
"$bin" --home "$work/home" init --name scale > /dev/null 2>&1
"$bin" --home "$work/home" folder add "$work/docs" --id docs 2>&1 | tail -1
SOFTADASTRA_NO_DISCOVERY=1 "$bin" --home "$work/home" run --listen 127.0.0.1:0 > "$work/agent.log" 2>&1 &
agent=$!
until "$bin" --home "$work/home" status --json > /dev/null 2>&1 && grep -q running "$work/agent.log"; do sleep 0.2; done
sleep 2
for i in $(seq 20); do
  t0=$(date +%s%N)
  "$bin" --home "$work/home" status --json > /dev/null
  t1=$(date +%s%N)
  echo "status --json: $(( (t1 - t0) / 1000 )) us"
done

# A restart: the agent's own answer is the one with a folder's file count.
count() {
  "$bin" --home "$work/home" status --json 2>/dev/null |
    grep -o '"files": [0-9]*' | head -1 | grep -o '[0-9]*$' || echo -1
}
kill "$agent"
wait "$agent" 2>/dev/null || true
t0=$(date +%s%N)
SOFTADASTRA_NO_DISCOVERY=1 "$bin" --home "$work/home" run --listen 127.0.0.1:0 >> "$work/agent.log" 2>&1 &
agent=$!
until [ "$(count)" -ge 0 ]; do sleep 0.01; done
t1=$(date +%s%N)
before=$(count)
echo new > "$work/docs/after-restart.txt"
until [ "$(count)" -gt "$before" ]; do sleep 0.01; done
t2=$(date +%s%N)
echo "restart: control socket answers after $(( (t1 - t0) / 1000000 )) ms; a file written then indexed after $(( (t2 - t0) / 1000000 )) ms"
