#!/usr/bin/env bash
# Two `softadastra run` nodes over a slow link: each in a network namespace
# this script creates, joined by a veth pair shaped with tbf at RATE. Node a
# shares FILES random files of MB MiB; prints how long node b takes to hold
# them all (or that it did not within LIMIT seconds), and what b's
# `sync status` said last. Needs root (ip netns, tc). Talks to nothing
# outside the two namespaces, which it removes when it ends.
#
#   cargo build --release -p softadastra-agent
#   RATE=2mbit FILES=4 MB=6 bash agent/benches/slow_link.sh
set -euo pipefail
RATE=${RATE:-2mbit}
FILES=${FILES:-4}
MB=${MB:-6}
LIMIT=${LIMIT:-300}
BIN=${BIN:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/softadastra}
NS_A=sa-slow-a
NS_B=sa-slow-b
W=$(mktemp -d)

cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  ip netns del "$NS_A" 2>/dev/null || true
  ip netns del "$NS_B" 2>/dev/null || true
  rm -rf "$W"
}
PIDS=()
trap cleanup EXIT

ip netns add "$NS_A"
ip netns add "$NS_B"
ip link add va netns "$NS_A" type veth peer name vb netns "$NS_B"
ip -n "$NS_A" addr add 10.77.0.1/24 dev va
ip -n "$NS_B" addr add 10.77.0.2/24 dev vb
for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
ip -n "$NS_A" link set va up
ip -n "$NS_B" link set vb up
ip netns exec "$NS_A" tc qdisc add dev va root tbf rate "$RATE" burst 64kb latency 100ms
ip netns exec "$NS_B" tc qdisc add dev vb root tbf rate "$RATE" burst 64kb latency 100ms

mkdir -p "$W/a/docs" "$W/b/docs"
for i in $(seq 1 "$FILES"); do head -c "${MB}M" /dev/urandom > "$W/a/docs/f$i.bin"; done
A=$("$BIN" --home "$W/a/home" init --name a 2>/dev/null)
B=$("$BIN" --home "$W/b/home" init --name b 2>/dev/null)
"$BIN" --home "$W/a/home" peer add "$B" --addr 10.77.0.2:7420 >/dev/null 2>&1
"$BIN" --home "$W/b/home" peer add "$A" --addr 10.77.0.1:7420 >/dev/null 2>&1
run_node() {
  ip netns exec "$1" "$BIN" --home "$W/$2/home" run "$W/$2/docs" --id docs \
    --listen 0.0.0.0:7420 --no-discovery 2>"$W/$2.log" >/dev/null &
  PIDS+=($!)
}
run_node "$NS_A" a
run_node "$NS_B" b

start=$(date +%s.%N)
synced=0
while :; do
  elapsed=$(echo "$(date +%s.%N) - $start" | bc)
  same=1
  for i in $(seq 1 "$FILES"); do
    cmp -s "$W/a/docs/f$i.bin" "$W/b/docs/f$i.bin" || { same=0; break; }
  done
  [ "$same" = 1 ] && { synced=1; break; }
  [ "$(echo "$elapsed > $LIMIT" | bc)" = 1 ] && break
  sleep 0.5
done
bytes=$((FILES * MB * 1048576))
if [ "$synced" = 1 ]; then
  printf 'slow link %s: %d x %d MiB synced in %.1f s (%.0f kB/s)\n' \
    "$RATE" "$FILES" "$MB" "$elapsed" "$(echo "$bytes / $elapsed / 1000" | bc -l)"
else
  printf 'slow link %s: %d x %d MiB NOT synced within %d s\n' "$RATE" "$FILES" "$MB" "$LIMIT"
  "$BIN" --home "$W/b/home" sync status || true
fi
