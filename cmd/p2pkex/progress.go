package main

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/protocol"
)

// progress prints the steps of exchanges as they happen, one line each.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	notices bool // print every notice, not only phases
}

func (p *progress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// follow prints the events of ch under the name who until ch closes. When
// results is not nil, EventDone and EventFailed are passed on to it after
// the lines before them were printed.
func (p *progress) follow(who string, ch <-chan node.Event, results chan<- node.Event, wg *sync.WaitGroup) {
	defer wg.Done()
	for e := range ch {
		if line := p.line(e); line != "" {
			p.printf("  %-6s %s\n", who, line)
		}
		if results != nil && (e.Kind == node.EventDone || e.Kind == node.EventFailed) {
			results <- e
		}
	}
}

func (p *progress) line(e node.Event) string {
	if e.Kind != node.EventStep {
		return ""
	}
	s := e.Step
	switch s.Kind {
	case protocol.EventPhaseEntered:
		switch s.Phase {
		case protocol.Phase1:
			return fmt.Sprintf("phase 1: start as %v, compare fingerprints", s.Role)
		case protocol.Phase2:
			if !s.SendOwn && !s.ReceivePeer {
				return "phase 2: skipped, both public keys are current"
			}
			var parts []string
			if s.SendOwn {
				parts = append(parts, "send own public key")
			}
			if s.ReceivePeer {
				parts = append(parts, "receive peer's public key")
			}
			return "phase 2: " + strings.Join(parts, ", ")
		case protocol.Phase3:
			return "phase 3: send sealed, signed key part"
		case protocol.PhaseDone:
			return "done: both confirmations verified"
		}
	case protocol.EventNoticeSent:
		if p.notices {
			return fmt.Sprintf("  -> %-13v %4d B", s.Notice, s.Size)
		}
	case protocol.EventNoticeReceived:
		if p.notices {
			return fmt.Sprintf("  <- %-13v %4d B", s.Notice, s.Size)
		}
	}
	return ""
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
