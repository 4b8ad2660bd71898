#!/usr/bin/env python3
"""Where the CPU of a load goes, as multiples of the crypto floor.

    p2pkex bench --concurrency 64 --count 10000 --latency 0 --cpuprofile cpu.out
    tools/perf/profsplit.py ./p2pkex cpu.out [more.out ...]

Reads `go tool pprof -traces` and puts every sample in one bucket, by the
first rule below that its stack matches (docs/PERFORMANCE.md, "What
remains"). The Go runtime's work is taken out first, wherever it happens:
stack growth or an allocation inside HPKE counts as stack growth or
allocation, not as cryptography, so that the floor bucket is the arithmetic
of the four operations alone (seal, open, sign, verify). The last line is
the total, less the floor probe, over the floor bucket.
"""
import collections
import re
import subprocess
import sys

RULES = [
    ("floor probe (beside the load)", r"startFloorProbe"),
    ("Go stack growth", r"runtime\.(newstack|morestack|copystack)"),
    ("Go GC (mark, assists, sweep, write barriers)",
     r"runtime\.(gcBgMarkWorker|gcAssistAlloc|bgsweep|bgscavenge|markroot|gcMarkDone|gcStart|wbBufFlush|gcWriteBarrier)"),
    ("Go allocation", r"runtime\.(mallocgc|growslice|makeslice|newobject)"),
    ("crypto floor (seal, open, sign, verify)",
     r"crypto/hpke\.(Seal|Open)\b|Ed25519PrivateKey\)\.Sign|Ed25519PublicKey\)\.Verify"),
    ("p2pkex machine (transcript, derivations, protobuf)",
     r"p2pkex/protocol\.\(\*Machine\)|p2pkex/protocol\.NewMachine"),
    ("p2pkex node (store, records, install)",
     r"p2pkex/node\.\(\*Node\)\.(machine|install|knownRecord)|p2pkex/peerstore"),
    ("libp2p stream (yamux, TLS, system calls, stream open, rcmgr)",
     r"go-yamux|crypto/tls|go-libp2p|go-multistream|quic-go|internal/poll|syscall\.|net\.\(\*"),
    ("p2pkex driver (framing, deadlines)", r"p2pkex/protocol\."),
    ("p2pkex node (slots, events)", r"p2pkex/node"),
    ("Go scheduler",
     r"runtime\.(schedule|findRunnable|park_m|mcall|goexit|futex|notesleep|stopm|startm|wakep|netpoll|usleep|osyield|stealWork|runqgrab|gopark|goready|ready|selectgo|chansend|chanrecv)"),
    ("other", r""),
]
FLOOR = "crypto floor (seal, open, sign, verify)"
PROBE = "floor probe (beside the load)"


def split(binary, profile):
    out = subprocess.run(["go", "tool", "pprof", "-traces", binary, profile],
                         capture_output=True, text=True, check=True).stdout
    sums = collections.Counter()
    for block in out.split("-----------+-------------------------------------------------------")[1:]:
        lines = [l for l in block.strip("\n").split("\n") if l.strip()]
        m = lines and re.match(r"\s*([0-9.]+)(m?s)\s+(.*)", lines[0])
        if not m:
            continue
        seconds = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
        stack = "\n".join([m.group(3)] + lines[1:])
        for name, pattern in RULES:
            if re.search(pattern, stack):
                sums[name] += seconds
                break
    return sums


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    for profile in sys.argv[2:]:
        sums = split(sys.argv[1], profile)
        total, floor = sum(sums.values()), sums[FLOOR]
        print(f"{profile}: {total:.2f} s of samples")
        print("| | seconds | share | × floor |\n| --- | ---: | ---: | ---: |")
        for name, _ in RULES:
            if sums[name]:
                print(f"| {name} | {sums[name]:.2f} | {100 * sums[name] / total:.1f} % | {sums[name] / floor:.3f} |")
        print(f"| total less the probe, over the floor | | | **{(total - sums[PROBE]) / floor:.2f}** |\n")


if __name__ == "__main__":
    main()
