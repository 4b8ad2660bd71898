//go:build unix

package node

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/libp2p/go-libp2p/p2p/security/noise"

	"github.com/p2pkex/p2pkex/internal/forgetful"
	ps "github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// Benchmarks of the exchange on a real libp2p connection, and the anchors
// it is compared with, in one package so that one run measures them side by
// side (docs/PERFORMANCE.md):
//
//	go test -run '^$' -bench . -benchtime 2s ./node/
//
// Every host listens on 127.0.0.1 only. Besides ns/op (wall time per
// operation, one at a time) the exchange and the Noise handshake report
// cpu-ns/op: the process CPU time (user and system, both sides) per
// operation; the exchange also reports writes/op, the write system calls
// per exchange, both sides (Linux).

// syscallsWrite returns how many write system calls the process made
// (syscw of /proc/self/io), and false where there is no such file.
func syscallsWrite() (uint64, bool) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchPair starts two nodes on loopback TCP, connects them and runs one
// exchange, so that the connection exists, identify has finished (the
// stream's protocol is then negotiated lazily, without a round trip) and,
// unless forget is set, both hold each other's record.
// opts, if not nil, gives each node's further options.
func benchPair(b *testing.B, suite protocol.Suite, forget bool, opts func() []Option) (a, c *Node) {
	b.Helper()
	start := func() *Node {
		var st ps.Store = ps.NewMemory()
		if forget {
			st = forgetful.New(st)
		}
		n, err := New(context.Background(), append([]Option{WithStore(st), WithSuites(suite),
			WithListenAddrs("/ip4/127.0.0.1/tcp/0")}, extra(opts)...)...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			n.Close()
			st.Close()
		})
		return n
	}
	a, c = start(), start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: c.ID(), Addrs: c.Host().Addrs()}); err != nil {
		b.Fatal(err)
	}
	if _, err := a.Exchange(ctx, c.ID()); err != nil {
		b.Fatal(err)
	}
	waitInstalled(b, a, c)
	return a, c
}

// waitInstalled waits until the responder c installed the epoch the
// initiator a holds: the responder finishes half a round trip after the
// initiator.
func waitInstalled(b *testing.B, a, c *Node) {
	b.Helper()
	ka, err := a.ActiveKey(c.ID())
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if kc, err := c.ActiveKey(a.ID()); err == nil && kc.Epoch == ka.Epoch {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
	b.Fatal("responder did not install the key")
}

// BenchmarkExchangeLoopback is one exchange on an existing libp2p loopback
// connection, as the initiator sees it (Exchange returns), with both
// records known (on the kept stream), with both sent (on the kept stream),
// and as a first contact: both sent, on a new stream each time (what
// "p2pkex bench --keys both --peers N" runs, less the new identities).
// cpu-ns/op counts both sides.
func BenchmarkExchangeLoopback(b *testing.B) {
	for _, suite := range protocol.DefaultSuites() {
		for _, keys := range []string{"KeysKnown", "BothKeys", "FirstContact"} {
			b.Run(suite.String()+"/"+keys, func(b *testing.B) {
				var opts func() []Option
				if keys == "FirstContact" {
					// No kept stream; and no resource limits, as in
					// p2pkex bench, since back-to-back new streams to one
					// peer outrun the closing of the last ones.
					opts = func() []Option {
						rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(rcmgr.InfiniteLimits), rcmgr.WithMetricsDisabled())
						if err != nil {
							b.Fatal(err)
						}
						return []Option{WithStreamIdleTimeout(0), WithLibp2pOptions(libp2p.ResourceManager(rm))}
					}
				}
				a, c := benchPair(b, suite, keys != "KeysKnown", opts)
				ctx := context.Background()
				b.ReportAllocs()
				cpu := processCPU()
				writes, haveWrites := syscallsWrite()
				for b.Loop() {
					info, err := a.Exchange(ctx, c.ID())
					if err != nil {
						b.Fatal(err)
					}
					if keys != "KeysKnown" && !(info.SentOwnKey && info.ReceivedPeerKey) {
						b.Fatal("records were not sent")
					}
				}
				waitInstalled(b, a, c)
				b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
				// Each write is one yamux frame in one TLS record: the
				// frames an exchange costs, both sides.
				if w, ok := syscallsWrite(); ok && haveWrites {
					b.ReportMetric(float64(w-writes)/float64(b.N), "writes/op")
				}
			})
		}
	}
}

func extra(opts func() []Option) []Option {
	if opts == nil {
		return nil
	}
	return opts()
}

// tcpPair returns both ends of a new loopback TCP connection.
func tcpPair(l net.Listener) (client, server net.Conn, err error) {
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	if server = <-accepted; server == nil {
		client.Close()
		return nil, nil, errors.New("accept failed")
	}
	return client, server, nil
}

// noisePeers are the two ends of a Noise handshake.
type noisePeers struct {
	init, resp     *noise.Transport
	initID, respID peer.ID
}

func newNoisePeers(b *testing.B) *noisePeers {
	b.Helper()
	var np noisePeers
	for _, side := range []struct {
		t  **noise.Transport
		id *peer.ID
	}{{&np.init, &np.initID}, {&np.resp, &np.respID}} {
		sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if *side.t, err = noise.New(noise.ID, sk, nil); err != nil {
			b.Fatal(err)
		}
		if *side.id, err = peer.IDFromPrivateKey(sk); err != nil {
			b.Fatal(err)
		}
	}
	return &np
}

// handshake runs one Noise XX handshake over client and server.
func (np *noisePeers) handshake(client, server net.Conn) error {
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		_, err := np.resp.SecureInbound(ctx, server, np.initID)
		done <- err
	}()
	_, err := np.init.SecureOutbound(ctx, client, np.respID)
	return errors.Join(err, <-done)
}

// BenchmarkNoiseXX is the anchor: the libp2p Noise XX handshake (Ed25519
// identities), both sides, over a fresh loopback TCP connection (set up
// outside the timer) and over a net.Pipe.
func BenchmarkNoiseXX(b *testing.B) {
	b.Run("TCP", func(b *testing.B) {
		np := newNoisePeers(b)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		b.ReportAllocs()
		var cpu time.Duration
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			client, server, err := tcpPair(l)
			if err != nil {
				b.Fatal(err)
			}
			start := processCPU()
			b.StartTimer()
			err = np.handshake(client, server)
			b.StopTimer()
			cpu += processCPU() - start
			client.Close()
			server.Close()
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
	b.Run("Pipe", func(b *testing.B) {
		np := newNoisePeers(b)
		b.ReportAllocs()
		for b.Loop() {
			client, server := net.Pipe()
			err := np.handshake(client, server)
			client.Close()
			server.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPing is the other anchor: one libp2p ping round trip on an open
// ping stream between two loopback hosts, built as a node builds its own.
func BenchmarkPing(b *testing.B) {
	newHost := func() host.Host {
		opts, err := HostOptions(WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			b.Fatal(err)
		}
		h, err := libp2p.New(opts...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { h.Close() })
		return h
	}
	h1, h2 := newHost(), newHost()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := h1.Connect(ctx, peer.AddrInfo{ID: h2.ID(), Addrs: h2.Addrs()}); err != nil {
		b.Fatal(err)
	}
	results := ping.Ping(ctx, h1, h2.ID())
	if r := <-results; r.Error != nil {
		b.Fatal(r.Error)
	}
	for b.Loop() {
		if r := <-results; r.Error != nil {
			b.Fatal(r.Error)
		}
	}
}
