#!/usr/bin/env bash
# Two p2pkex daemons, each behind its own NAT router, exchange keys through
# a relay, send messages, and hole punching tries to connect them directly.
# Everything runs in network namespaces this script creates and removes on
# exit; no address leaves them. Needs root, ip (iproute2) and iptables.
#
#   sudo examples/nat/run.sh
#
# Network (the same as node's TestNATTraversal):
#
#   relay 10.80.0.10 ── bridge "public" 10.80.0.0/24 ── 10.80.0.1 router1 (NAT) 10.81.1.1 ── A 10.81.1.2
#                                                    └─ 10.80.0.2 router2 (NAT) 10.81.2.1 ── B 10.81.2.2
set -euo pipefail

cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespaces)"; exit 1; }
command -v ip >/dev/null || { echo "run.sh: needs ip (apt-get install iproute2)"; exit 1; }
IPT=$(command -v iptables || command -v iptables-legacy || true)
[ -n "$IPT" ] || { echo "run.sh: needs iptables (apt-get install iptables)"; exit 1; }

id=$$
pfx="p2pkex-nat-$id"
PUB=$pfx-pub R1=$pfx-r1 R2=$pfx-r2 A=$pfx-a B=$pfx-b
work=$(mktemp -d)
pids=()
cleanup() {
	set +e
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	for ns in $PUB $R1 $R2 $A $B; do ip netns delete "$ns" 2>/dev/null; done
	rm -rf "$work"
	echo "== removed the namespaces"
}
trap cleanup EXIT INT TERM

echo "== building p2pkex"
go build -o "$work/p2pkex" ./cmd/p2pkex
P=$work/p2pkex

echo "== network namespaces"
for ns in $PUB $R1 $R2 $A $B; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n $PUB link add br0 type bridge
ip -n $PUB addr add 10.80.0.10/24 dev br0
ip -n $PUB link set br0 up
i=0
for pair in "$R1 $A 1" "$R2 $B 2"; do
	set -- $pair
	r=$1 n=$2 k=$3
	ip link add out$k netns "$r" type veth peer name port$k netns $PUB
	ip -n $PUB link set port$k master br0 up
	ip -n "$r" addr add 10.80.0.$k/24 dev out$k
	ip -n "$r" link set out$k up
	ip link add lan$k netns "$n" type veth peer name gw$k netns "$r"
	ip -n "$r" addr add 10.81.$k.1/24 dev gw$k
	ip -n "$r" link set gw$k up
	ip -n "$n" addr add 10.81.$k.2/24 dev lan$k
	ip -n "$n" link set lan$k up
	ip -n "$n" route add default via 10.81.$k.1
	ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1
	ip netns exec "$r" "$IPT" -t nat -A POSTROUTING -o out$k -j MASQUERADE
	echo "   router$k masquerades LAN 10.81.$k.0/24 behind 10.80.0.$k"
done

# daemon NS NAME ARGS...: starts a daemon, logs to $work/NAME.log.
daemon() {
	local ns=$1 name=$2; shift 2
	ip netns exec "$ns" "$P" daemon --repo "$work/$name" --no-mdns --no-dht "$@" >"$work/$name.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		grep -q '^p2pkex daemon ' "$work/$name.log" 2>/dev/null && break
		sleep 0.1
	done
	awk '/^p2pkex daemon /{print $3; exit}' "$work/$name.log"
}

echo "== relay (public segment)"
R=$(daemon $PUB relay --relay --listen /ip4/10.80.0.10/tcp/4001 --listen /ip4/10.80.0.10/udp/4001/quic-v1)
RELAY=/ip4/10.80.0.10/tcp/4001/p2p/$R
echo "   $RELAY"
echo "== A behind router1, B behind router2, both using the relay"
IDA=$(daemon $A alice --relays "$RELAY" --reachability private --listen /ip4/10.81.1.2/tcp/4001 --listen /ip4/10.81.1.2/udp/4001/quic-v1)
IDB=$(daemon $B bob --relays "$RELAY" --reachability private --listen /ip4/10.81.2.2/tcp/4001 --listen /ip4/10.81.2.2/udp/4001/quic-v1)
echo "   A $IDA"
echo "   B $IDB"
for _ in $(seq 100); do
	"$P" status --repo "$work/bob" | grep -q '^relay ' && break
	sleep 0.1
done
"$P" status --repo "$work/bob" | sed 's/^/   B: /'

echo "== A connects to B through the relay and exchanges keys"
ip netns exec $A "$P" connect --repo "$work/alice" "$RELAY/p2p-circuit/p2p/$IDB"
ip netns exec $A "$P" exchange --repo "$work/alice" "$IDB"
"$P" peers --repo "$work/alice" | sed 's/^/   A: /'

echo "== messages both ways"
ip netns exec $A "$P" send --repo "$work/alice" "$RELAY/p2p-circuit/p2p/$IDB" "hello Bob, from behind NAT 1"
ip netns exec $B "$P" send --repo "$work/bob" "$RELAY/p2p-circuit/p2p/$IDA" "hello Alice, from behind NAT 2"
sleep 0.5
grep -h 'hello' "$work/alice.log" "$work/bob.log" | sed 's/^/   /'

echo "== hole punching: waiting up to 15 s for a direct connection"
direct=no
for _ in $(seq 150); do
	if "$P" peers --repo "$work/alice" | grep "^$IDB " | grep -q ' yes '; then direct=yes; break; fi
	sleep 0.1
done
"$P" peers --repo "$work/alice" | sed 's/^/   A: /'
if [ $direct = yes ]; then
	echo "   punched: A and B are connected directly; the next exchange uses it"
	ip netns exec $A "$P" exchange --repo "$work/alice" "$IDB"
else
	echo "   not punched: A and B stay on the relayed connection (see README)"
fi

echo "== done; daemon logs:"
for n in relay alice bob; do sed "s/^/   $n: /" "$work/$n.log"; done
