package main

// Hostile peers for the scenarios, built with protocol/protocoltest: a
// responder that downgrades the suite, and records out of bounds forged
// into a repo's store (a peer that signs them with its own identity key is
// what a stolen key, or a buggy or malicious peer, can send).

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/protocoltest"
)

// downgrader runs a libp2p host on loopback that answers exchanges as a
// responder whose record holds both suites but which chooses the weaker
// common one, and writes its full address to the file named by its
// argument:
//
//	downgrader FILE
func downgrader() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "downgrader:", err)
		os.Exit(1)
	}
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		fail(err)
	}
	h, err := libp2p.New(libp2p.Identity(sk), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		fail(err)
	}
	key, err := protocol.NewExchangeKey(sk, protocol.DefaultSuites(), 1, time.Now(), 24*time.Hour)
	if err != nil {
		fail(err)
	}
	stop := protocoltest.ServeDowngradingResponder(h, sk, key)
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	if err != nil || len(addrs) == 0 {
		fail(fmt.Errorf("no address: %v", err))
	}
	tmp := os.Args[1] + ".tmp"
	if err := os.WriteFile(tmp, []byte(addrs[0].String()), 0o600); err != nil {
		fail(err)
	}
	if err := os.Rename(tmp, os.Args[1]); err != nil {
		fail(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	stop()
	h.Close()
	os.Exit(0)
}

// cmdForgeRecord makes a forged exchange key, signed with the repo's own
// identity, the current one of a repo whose daemon is stopped:
//
//	forgerecord REPO seqjump   the sequence number jumps past protocol.MaxSeqJump
//	forgerecord REPO longlife  valid for longer than protocol.MaxRecordLifetime
func cmdForgeRecord(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: forgerecord REPO seqjump|longlife")
	}
	st, err := peerstore.OpenBolt(filepath.Join(ts.MkAbs(args[0]), storeDir))
	ts.Check(err)
	defer st.Close()
	id, err := st.Identity()
	ts.Check(err)
	cur, _, err := st.ExchangeKeys()
	ts.Check(err)
	now := time.Now()
	seq, expires := cur.Seq+1, now.Add(24*time.Hour)
	switch args[1] {
	case "seqjump":
		seq = cur.Seq + protocol.MaxSeqJump + 1
	case "longlife":
		expires = now.Add(protocol.MaxRecordLifetime + 24*time.Hour)
	default:
		ts.Fatalf("forgerecord: unknown kind %q", args[1])
	}
	xk, err := protocoltest.ForgeExchangeKey(id, protocol.DefaultSuites(), seq, now, expires)
	ts.Check(err)
	priv, err := xk.PrivateKeys()
	ts.Check(err)
	rec := peerstore.ExchangeKey{Seq: xk.Seq, Record: xk.Envelope, Created: now}
	for _, s := range xk.Suites() {
		rec.Keys = append(rec.Keys, peerstore.SuiteKey{Suite: uint16(s), Private: priv[s]})
	}
	ts.Check(st.RotateExchangeKey(rec, now, time.Minute))
}
