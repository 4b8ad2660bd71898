package main

import (
	"fmt"
	"io"
	"sync"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/protocol"
)

// progress prints lines (the steps of exchanges as they happen, a
// daemon's events) from several goroutines, one line at a time.
type progress struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *progress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// describe says which public keys phase 2 carried.
func describe(info *node.KeyInfo) string { return describeFlags(info.SentOwnKey, info.ReceivedPeerKey) }

func describeFlags(sent, received bool) string {
	switch {
	case sent && received:
		return "both public keys sent"
	case sent:
		return "own public key sent"
	case received:
		return "peer's public key received"
	}
	return "phase 2 skipped"
}

// suiteLabel names a session's suite and marks the classical one: a
// session without a post-quantum KEM is worth noticing.
func suiteLabel(name string) string {
	s, err := protocol.ParseSuite(name)
	if err != nil || s.PostQuantum() {
		return name
	}
	return name + " (classical)"
}
