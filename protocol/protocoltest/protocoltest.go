// Package protocoltest provides misbehaving peers of the exchange
// protocol for tests, as net/http/httptest provides test servers: records
// outside the bounds every honest peer checks, and a responder that
// downgrades the suite. It is test support: a program that uses it builds a
// peer the rest of the network refuses.
//
// What it builds cannot be built through package protocol's API, which
// refuses to make such records and always chooses the suite the
// specification prescribes (docs/PROTOCOL.md, sections 6 and 8).
package protocoltest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/p2pkex/p2pkex/protocol"
	"github.com/p2pkex/p2pkex/protocol/internal/hooks"
)

// ForgeExchangeKey returns an exchange key of identity with fresh keys for
// suites, sequence seq, and the given creation and expiry times (whole
// seconds), correctly signed. No bound is checked: it builds records valid
// for years, created in the future, expiring before they are created, or
// with a sequence number that jumps to the end of its range — each of
// which an honest peer refuses (ParsePeerRecord, RelateRecords).
func ForgeExchangeKey(identity crypto.PrivKey, suites []protocol.Suite, seq uint64, created, expires time.Time) (*protocol.ExchangeKey, error) {
	nums := make([]uint16, len(suites))
	for i, s := range suites {
		nums[i] = uint16(s)
	}
	k, err := hooks.ForgeExchangeKey(identity, nums, seq, created, expires)
	if err != nil {
		return nil, fmt.Errorf("protocoltest: forge exchange key: %w", err)
	}
	return k.(*protocol.ExchangeKey), nil
}

// ServeDowngradingResponder answers exchanges (protocol.ID) on h as
// identity with exchange key key, honestly except for one thing: of the
// suites the initiator offers and key covers, it chooses the last instead
// of the first. An honest initiator refuses it with protocol.ErrDowngrade
// (status SUITE_DOWNGRADE); an initiator that does not check ends with a
// session of the weaker suite. Each exchange runs as a first contact (the
// responder holds no record of the initiator) at epoch 1, with the default
// notice size and phase timeout.
//
// stop removes the handler and waits for the exchanges in flight, which it
// ends; calling it more than once is safe.
func ServeDowngradingResponder(h host.Host, identity crypto.PrivKey, key *protocol.ExchangeKey) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	stopped := false
	h.SetStreamHandler(protocol.ID, func(s network.Stream) {
		mu.Lock()
		if stopped {
			mu.Unlock()
			_ = s.Reset()
			return
		}
		wg.Add(1)
		mu.Unlock()
		defer wg.Done()
		if err := serveDowngrade(ctx, s, identity, key); err != nil {
			_ = s.ResetWithError(protocol.ResetCode(err))
			return
		}
		_ = s.Close()
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			h.RemoveStreamHandler(protocol.ID)
			mu.Lock()
			stopped = true
			mu.Unlock()
			cancel()
			wg.Wait()
		})
	}
}

// lastCommon is the downgrading choice.
func lastCommon(common []uint16) uint16 { return common[len(common)-1] }

func serveDowngrade(ctx context.Context, s network.Stream, identity crypto.PrivKey, key *protocol.ExchangeKey) error {
	release, err := protocol.PrepareStream(s, protocol.DefaultNoticeSize)
	if err != nil {
		return err
	}
	defer release()
	m, err := protocol.NewMachine(protocol.Config{
		Role:      protocol.Responder,
		Identity:  identity,
		Remote:    s.Conn().RemotePeer(),
		RemoteKey: s.Conn().RemotePublicKey(),
		Own:       key,
		Suites:    key.Suites(),
		Epoch:     1,
	})
	if err != nil {
		return err
	}
	if err := hooks.SetSuiteChoice(m, lastCommon); err != nil {
		return errors.Join(errors.New("protocoltest: downgrading responder"), err)
	}
	res, err := protocol.Run(ctx, s, m, 0)
	if err != nil {
		return err
	}
	res.Wipe()
	m.Wipe()
	return nil
}
