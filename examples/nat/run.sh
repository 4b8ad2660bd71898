#!/usr/bin/env bash
# p2pkex daemons behind two different NAT routers: they exchange keys
# through a relay, survive the relay dying in the middle of an exchange,
# punch a hole through both NATs, and a public node exchanges with both.
# Everything runs in network namespaces this script creates and removes on
# exit; no address leaves them. Needs root, ip (iproute2) and iptables.
#
#   sudo examples/nat/run.sh
#
# Network (node's TestNATTraversal builds the same one, with the public
# segment in 10.80.0.0/24; see README.md for why it is 192.0.0.192/26 here):
#
#   relay 192.0.0.200 ─┬─ bridge "public" 192.0.0.192/26
#   P     192.0.0.220 ─┤
#                      ├─ 192.0.0.201 router1 (NAT) 10.81.1.1 ── A 10.81.1.2
#                      └─ 192.0.0.202 router2 (NAT) 10.81.2.1 ── B 10.81.2.2
#
# Exits 1 if a scenario does not turn out as README.md says it should.
set -euo pipefail

cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespaces)"; exit 1; }
command -v ip >/dev/null || { echo "run.sh: needs ip (apt-get install iproute2)"; exit 1; }
IPT=$(command -v iptables || command -v iptables-legacy || true)
[ -n "$IPT" ] || { echo "run.sh: needs iptables (apt-get install iptables)"; exit 1; }

NET=192.0.0
RELAY_IP=$NET.200 PUB_IP=$NET.220
pfx="p2pkex-nat-$$"
PUB=$pfx-pub PN=$pfx-p R1=$pfx-r1 R2=$pfx-r2 A=$pfx-a B=$pfx-b
work=$(mktemp -d)
declare -A pid
failed=0
cleanup() {
	set +e
	for p in "${pid[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	for ns in $PUB $PN $R1 $R2 $A $B; do ip netns delete "$ns" 2>/dev/null; done
	rm -rf "$work"
	echo "== removed the namespaces"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "   $*"; }
bad() { echo "   UNEXPECTED: $*"; failed=1; }

echo "== building p2pkex"
go build -o "$work/p2pkex" ./cmd/p2pkex
P=$work/p2pkex

echo "== network namespaces"
for ns in $PUB $PN $R1 $R2 $A $B; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n $PUB link add br0 type bridge
ip -n $PUB addr add $RELAY_IP/26 dev br0
ip -n $PUB link set br0 up
ip link add eth0 netns $PN type veth peer name portp netns $PUB
ip -n $PUB link set portp master br0 up
ip -n $PN addr add $PUB_IP/26 dev eth0
ip -n $PN link set eth0 up
for k in 1 2; do
	r=$pfx-r$k n=$([ $k = 1 ] && echo $A || echo $B)
	ip link add out$k netns "$r" type veth peer name port$k netns $PUB
	ip -n $PUB link set port$k master br0 up
	ip -n "$r" addr add $NET.20$k/26 dev out$k
	ip -n "$r" link set out$k up
	ip link add lan$k netns "$n" type veth peer name gw$k netns "$r"
	ip -n "$r" addr add 10.81.$k.1/24 dev gw$k
	ip -n "$r" link set gw$k up
	ip -n "$n" addr add 10.81.$k.2/24 dev lan$k
	ip -n "$n" link set lan$k up
	ip -n "$n" route add default via 10.81.$k.1
	ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1
	ip netns exec "$r" "$IPT" -t nat -A POSTROUTING -o out$k -j MASQUERADE
	# A home router's firewall: from outside, only packets of connections
	# it tracks pass; the rest is dropped without an answer.
	for chain in INPUT FORWARD; do
		ip netns exec "$r" "$IPT" -A $chain -i out$k -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
		ip netns exec "$r" "$IPT" -A $chain -i out$k -j DROP
	done
	say "router$k masquerades LAN 10.81.$k.0/24 behind $NET.20$k"
done

# block on|off: each router refuses what its LAN sends to the other
# router, so that A and B reach each other only through the relay.
block() {
	local op=-D k other
	for k in 1 2; do
		other=$NET.20$((3 - k))
		if [ "$1" = on ]; then
			ip netns exec $pfx-r$k "$IPT" -I FORWARD 1 -i gw$k -d "$other" -p tcp -j REJECT --reject-with tcp-reset
			ip netns exec $pfx-r$k "$IPT" -I FORWARD 2 -i gw$k -d "$other" -j REJECT
		else
			ip netns exec $pfx-r$k "$IPT" -D FORWARD -i gw$k -d "$other" -p tcp -j REJECT --reject-with tcp-reset
			ip netns exec $pfx-r$k "$IPT" -D FORWARD -i gw$k -d "$other" -j REJECT
		fi
	done
}

# daemon NS NAME ARGS...: starts a daemon (log: $work/NAME.log, appended)
# and sets id to its peer ID.
daemon() {
	local ns=$1 name=$2 lines
	shift 2
	lines=0
	[ ! -f "$work/$name.log" ] || lines=$(wc -l <"$work/$name.log")
	ip netns exec "$ns" "$P" daemon --repo "$work/$name" --no-mdns --no-dht "$@" >>"$work/$name.log" 2>&1 &
	pid[$name]=$!
	for _ in $(seq 100); do
		tail -n +$((lines + 1)) "$work/$name.log" | grep -q '^listening on ' && break
		sleep 0.1
	done
	id=$(tail -n +$((lines + 1)) "$work/$name.log" | awk '/^p2pkex daemon /{print $3; exit}')
	[ -n "$id" ] || { echo "run.sh: daemon $name did not start:"; cat "$work/$name.log"; exit 1; }
}

# show COMMAND...: runs a p2pkex command, its output indented.
show() {
	"$P" "$@" 2>&1 | sed 's/^/   /'
	return "${PIPESTATUS[0]}"
}

# reserved NAME: whether NAME's daemon holds a relay slot now: status lists
# the relay and an address through it (the "relay" line alone also shows a
# relay the daemon has connected to again but not yet reserved on; see
# README.md).
reserved() {
	local st
	st=$("$P" status --repo "$work/$1" 2>/dev/null) || return 1
	grep -q '^relay .*(reservation)' <<<"$st" && grep -q '^address .*/p2p-circuit/' <<<"$st"
}

# conn NAME PEER: how NAME's daemon is connected to PEER (yes, relayed, no).
conn() { "$P" peers --repo "$work/$1" | awk -v p="$2" '$1 == p {print $2; exit}'; }
direct() { [ "$(conn "$1" "$2")" = yes ]; }

# epoch NAME PEER: NAME's current epoch with PEER.
epoch() { "$P" peers --repo "$work/$1" | awk -v p="$2" '$1 == p {print $5; exit}'; }

# waitfor SECONDS COMMAND...: runs COMMAND every 0.1 s until it succeeds.
waitfor() {
	local n=$(($1 * 10))
	shift
	for _ in $(seq $n); do "$@" && return 0; sleep 0.1; done
	return 1
}

# ms: milliseconds since the epoch; since MS: seconds since then.
ms() { echo $(($(date +%s%N) / 1000000)); }
since() {
	local d=$(($(ms) - $1))
	printf '%d.%03d' $((d / 1000)) $((d % 1000))
}

relay_args=(--relay --listen /ip4/$RELAY_IP/tcp/4001 --listen /ip4/$RELAY_IP/udp/4001/quic-v1)

echo "== relay and the public node P (public segment)"
daemon $PUB relay "${relay_args[@]}"
R=$id RELAY=/ip4/$RELAY_IP/tcp/4001/p2p/$id
daemon $PN pub --reachability public --listen /ip4/$PUB_IP/tcp/4001 --listen /ip4/$PUB_IP/udp/4001/quic-v1
IDP=$id
say "relay $RELAY"
say "P     /ip4/$PUB_IP/tcp/4001/p2p/$IDP"
echo "== A behind router1, B behind router2, both using the relay"
block on
say "(until scenario B, the routers refuse what A and B send to each other's public address:"
say " they reach each other only through the relay)"
daemon $A alice --relays "$RELAY" --reachability private --listen /ip4/10.81.1.2/tcp/4001 --listen /ip4/10.81.1.2/udp/4001/quic-v1
IDA=$id
daemon $B bob --relays "$RELAY" --reachability private --listen /ip4/10.81.2.2/tcp/4001 --listen /ip4/10.81.2.2/udp/4001/quic-v1
IDB=$id
say "A $IDA"
say "B $IDB"
waitfor 10 reserved alice || bad "A holds no relay slot"
waitfor 10 reserved bob || bad "B holds no relay slot"
"$P" status --repo "$work/bob" | sed 's/^/   B: /'

echo "== scenario A: A exchanges keys with B through the relay, then messages both ways"
show exchange --repo "$work/alice" "$RELAY/p2p-circuit/p2p/$IDB" || bad "the exchange through the relay failed"
[ "$(conn alice "$IDB")" = relayed ] || bad "A and B are not connected through the relay"
show send --repo "$work/alice" "$IDB" "hello Bob, from behind NAT 1" || bad "A's message failed"
show send --repo "$work/bob" "$IDA" "hello Alice, from behind NAT 2" || bad "B's message failed"
sleep 0.3
grep -h 'hello' "$work/alice.log" "$work/bob.log" | sed 's/^/   /'
"$P" peers --repo "$work/alice" | sed 's/^/   A: /'

echo "== scenario C: the relay dies in the middle of an exchange"
# Router1 drops large packets from the relay to A: B's sealed key part
# (phase 3) never reaches A, so the exchange stops half-way and stays there
# (the small notices of phase 1 pass). Then the relay is killed (SIGKILL).
epochA=$(epoch alice "$IDB") epochB=$(epoch bob "$IDA")
ip netns exec $R1 "$IPT" -I FORWARD 1 -i out1 -s $RELAY_IP -m length --length 600:65535 -j DROP
"$P" exchange --repo "$work/alice" "$IDB" >"$work/c.out" 2>&1 &
cpid=$!
waitfor 10 grep -q 'phase 3' "$work/c.out" || bad "the exchange did not reach phase 3"
sleep 0.5
killed=$(ms)
{ kill -9 "${pid[relay]}" && wait "${pid[relay]}"; } 2>/dev/null || true
unset 'pid[relay]'
crc=0
wait $cpid || crc=$?
tookA=$(since "$killed")
ip netns exec $R1 "$IPT" -D FORWARD -i out1 -s $RELAY_IP -m length --length 600:65535 -j DROP
sed 's/^/   A: /' "$work/c.out"
say "(A's exchange ended $tookA s after the relay was killed, exit status $crc)"
[ $crc != 0 ] || bad "A's exchange did not fail"
waitfor 15 grep -q "exchange with $IDA failed" "$work/bob.log" || bad "B reported no failure"
grep -h "exchange with $IDA failed" "$work/bob.log" | sed 's/^/   B: /'
if [ "$(epoch alice "$IDB")" = "$epochA" ] && [ "$(epoch bob "$IDA")" = "$epochB" ]; then
	say "no key installed: A and B both still at epoch $epochA"
else
	bad "a key was installed: A at epoch $(epoch alice "$IDB"), B at $(epoch bob "$IDA"), before $epochA and $epochB"
fi
echo "   restarting the relay (same repo: same identity; same address)"
waitfor 10 eval '! reserved bob' || true
daemon $PUB relay "${relay_args[@]}"
[ "$id" = "$R" ] || bad "the restarted relay is $id, not $R"
start=$(ms)
waitfor 40 reserved alice || bad "A holds no relay slot after the restart"
waitfor 40 reserved bob || bad "B holds no relay slot after the restart"
say "A and B hold slots on the relay again, $(since "$start") s after it restarted"

echo "== scenario B: the routers stop refusing; A retries through the relay, hole punching follows"
block off
show exchange --repo "$work/alice" "$RELAY/p2p-circuit/p2p/$IDB" || bad "the retry through the relay failed"
start=$(ms)
if direct alice "$IDB"; then
	say "punched: A and B were connected directly by the time the retry returned"
elif waitfor 15 direct alice "$IDB"; then
	say "punched: A and B are connected directly, $(since "$start") s after the retry returned"
fi
if direct alice "$IDB"; then
	show exchange --repo "$work/alice" "$IDB" || bad "the exchange over the direct connection failed"
	direct alice "$IDB" || bad "the second exchange did not run direct"
else
	bad "not punched within 15 s"
fi
"$P" peers --repo "$work/alice" | sed 's/^/   A: /'

echo "== scenario D: P (public) and A, B (behind NATs)"
show exchange --repo "$work/alice" "/ip4/$PUB_IP/tcp/4001/p2p/$IDP" || bad "A's exchange with P failed"
direct alice "$IDP" || bad "A is not connected to P directly"
show exchange --repo "$work/pub" "$RELAY/p2p-circuit/p2p/$IDB" || bad "P's exchange with B through the relay failed"
if waitfor 10 direct pub "$IDB"; then say "B connected back to P directly"; else say "P and B stay on the relay"; fi

echo "== daemon logs"
for n in relay pub alice bob; do sed "s/^/   $n: /" "$work/$n.log"; done
if [ $failed = 0 ]; then echo "== all scenarios as expected"; else echo "== some scenarios were not as expected (UNEXPECTED above)"; fi
exit $failed
