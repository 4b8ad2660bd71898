#!/usr/bin/env bash
# Reproduces the figures of docs/PERFORMANCE.md on this machine. Everything
# runs on 127.0.0.1 or in memory. Results go to $OUT (default /tmp/p2pkex-perf);
# the chart is redrawn into docs/performance.svg. Takes about 15 minutes on
# two cores. Run it on an otherwise idle machine: every file records the
# load average it started with. On a machine shared with other work,
# WAIT_IDLE=1 makes every measurement wait (up to 10 minutes) until the CPUs
# have been at least 90 % idle for two seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-${TMPDIR:-/tmp}/p2pkex-perf}
RUNS=${RUNS:-5}
mkdir -p "$OUT"
go build -o "$OUT/p2pkex" ./cmd/p2pkex

# idle waits, with WAIT_IDLE=1, until the machine is idle.
idle() {
	[ -n "${WAIT_IDLE:-}" ] || return 0
	local end=$((SECONDS + 600)) u n s i w x y z t1 i1 t2 i2
	while [ $SECONDS -lt $end ]; do
		read -r _ u n s i w x y z _ < /proc/stat
		t1=$((u + n + s + i + w + x + y + z)) i1=$i
		sleep 2
		read -r _ u n s i w x y z _ < /proc/stat
		t2=$((u + n + s + i + w + x + y + z)) i2=$i
		[ $((100 * (i2 - i1) / (t2 - t1))) -ge 90 ] && return 0
	done
	echo "run.sh: machine still busy, measuring anyway" >&2
}
bench() {
	idle
	"$OUT/p2pkex" bench --quiet "$@"
}

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
idle
go test -run '^$' -bench . -benchmem -count "$RUNS" ./protocol/ > "$OUT/bench-protocol.txt"
idle
go test -run '^$' -bench . -benchmem -benchtime 2s -count "$RUNS" ./node/ > "$OUT/bench-node.txt"
idle
go test -run '^$' -bench 'BoltLookupLatency|BoltOpen|BoltCommit' -count 3 ./peerstore/ > "$OUT/bench-peerstore.txt"

# The load tool. Headline: 10,000 exchanges, 64 in flight, default suite,
# keys known, with the mocknet round-trip count; RUNS times.
for _ in $(seq "$RUNS"); do
	bench --concurrency 64 --count 10000
done > "$OUT/load-c64.json"
# Both records sent in every exchange; the compact suite.
bench --concurrency 64 --count 10000 --keys both > "$OUT/load-c64-both.json"
bench --concurrency 64 --count 10000 --suite X25519 > "$OUT/load-c64-x25519.json"
# The secure channel and the transport, alternating: TLS 1.3 (the default),
# Noise, and QUIC instead of TCP with yamux (no mocknet round trips).
for _ in $(seq 2); do
	bench --concurrency 64 --count 10000 --latency 0
	bench --concurrency 64 --count 10000 --latency 0 --security noise >&3
	bench --concurrency 64 --count 10000 --latency 0 --transport quic >&4
done > "$OUT/load-c64-tls.json" 3> "$OUT/load-c64-noise.json" 4> "$OUT/load-c64-quic.json"
# Kept streams (the default: the next exchange with a peer runs on the stream
# of the last) against a new stream for every exchange, alternating.
for _ in $(seq 3); do
	bench --concurrency 64 --count 10000 --latency 0
	bench --concurrency 64 --count 10000 --latency 0 --new-streams >&3
done > "$OUT/load-c64-kept.json" 3> "$OUT/load-c64-new-streams.json"
# Heap with 1,000 exchanges in flight.
bench --peers 1000 --concurrency 1000 --count 10000 --latency 0 > "$OUT/load-c1000.json"
# Issue 15: the responder on bbolt (the default since) against memory,
# alternating in one invocation, medians of three; and 10,000 first contacts
# from new identities against a responder on bbolt.
bench --store both --runs 3 --concurrency 64 --count 3000 --latency 0 > "$OUT/issue15-stores.json"
bench --keys both --peers 10000 --concurrency 64 --latency 0 > "$OUT/issue15-first-contacts-10000.json"
go test -run '^$' -bench 'BoltCommitParallel' -benchtime 2s -count 3 ./peerstore/ > "$OUT/bench-peerstore-parallel.txt"
# Latency and throughput against the exchanges in flight, for the chart.
for c in 1 4 16 64; do
	bench --concurrency "$c" --count 4000 --latency 0
done > "$OUT/sweep.json"

go run ./tools/chart -o docs/performance.svg "$OUT/sweep.json"
for f in load-c64 load-c64-both load-c64-x25519 load-c64-tls load-c64-noise load-c64-quic load-c64-kept load-c64-new-streams load-c1000 sweep; do
	echo "## $f"
	go run ./tools/chart -table "$OUT/$f.json"
	echo
done > "$OUT/tables.md"
echo "results in $OUT; chart in docs/performance.svg"
