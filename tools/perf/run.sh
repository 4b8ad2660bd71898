#!/usr/bin/env bash
# Reproduces the figures of docs/PERFORMANCE.md on this machine. Everything
# runs on 127.0.0.1 or in memory. Results go to $OUT (default /tmp/p2pkex-perf);
# the chart is redrawn into docs/performance.svg. Takes about 10 minutes on
# two cores. Run it on an otherwise idle machine: every file records the
# load average it started with.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-${TMPDIR:-/tmp}/p2pkex-perf}
RUNS=${RUNS:-5}
mkdir -p "$OUT"
go build -o "$OUT/p2pkex" ./cmd/p2pkex

{
	echo "nproc: $(nproc)"
	grep -m1 'model name' /proc/cpuinfo
	grep -m1 'cpu MHz' /proc/cpuinfo
	echo "kernel: $(uname -sr)"
	go version
	echo "git: ${GIT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
	echo "loadavg: $(cat /proc/loadavg)"
} > "$OUT/machine.txt"

# Go benchmarks: the crypto floor and the in-memory exchange; the exchange
# on a loopback connection with its anchors (Noise XX, ping); the store.
go test -run '^$' -bench . -benchmem -count "$RUNS" ./protocol/ > "$OUT/bench-protocol.txt"
go test -run '^$' -bench . -benchmem -benchtime 2s -count "$RUNS" ./node/ > "$OUT/bench-node.txt"
go test -run '^$' -bench 'BoltLookupLatency|BoltOpen|BoltCommit' -count 3 ./peerstore/ > "$OUT/bench-peerstore.txt"

# The load tool. Headline: 10,000 exchanges, 64 in flight, default suite,
# keys known, with the mocknet round-trip count; RUNS times.
for _ in $(seq "$RUNS"); do
	"$OUT/p2pkex" bench --concurrency 64 --count 10000 --quiet
done > "$OUT/load-c64.json"
# Both records sent in every exchange; the compact suite.
"$OUT/p2pkex" bench --concurrency 64 --count 10000 --keys both --quiet > "$OUT/load-c64-both.json"
"$OUT/p2pkex" bench --concurrency 64 --count 10000 --suite X25519 --quiet > "$OUT/load-c64-x25519.json"
# Heap with 1,000 exchanges in flight.
"$OUT/p2pkex" bench --peers 1000 --concurrency 1000 --count 10000 --latency 0 --quiet > "$OUT/load-c1000.json"
# Latency and throughput against the exchanges in flight, for the chart.
for c in 1 4 16 64; do
	"$OUT/p2pkex" bench --concurrency "$c" --count 4000 --latency 0 --quiet
done > "$OUT/sweep.json"

go run ./tools/chart -o docs/performance.svg "$OUT/sweep.json"
for f in load-c64 load-c64-both load-c64-x25519 load-c1000 sweep; do
	echo "## $f"
	go run ./tools/chart -table "$OUT/$f.json"
	echo
done > "$OUT/tables.md"
echo "results in $OUT; chart in docs/performance.svg"
