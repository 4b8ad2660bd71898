package protocol

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"
)

// party is one side's long-term state in tests.
type party struct {
	id  peer.ID
	sk  crypto.PrivKey
	key *ExchangeKey
}

func newParty(t testing.TB, suites ...Suite) *party {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	return newPartyFromKey(t, sk, suites...)
}

func newPartyFromKey(t testing.TB, sk crypto.PrivKey, suites ...Suite) *party {
	t.Helper()
	if len(suites) == 0 {
		suites = DefaultSuites()
	}
	id, err := peer.IDFromPrivateKey(sk)
	require.NoError(t, err)
	k, err := NewExchangeKey(sk, suites, 1, time.Now(), DefaultRecordLifetime)
	require.NoError(t, err)
	return &party{id: id, sk: sk, key: k}
}

func (p *party) rotate(t testing.TB) {
	t.Helper()
	k, err := NewExchangeKey(p.sk, p.key.Suites(), p.key.Seq+1, time.Now(), DefaultRecordLifetime)
	require.NoError(t, err)
	p.key = k
}

// record is p's record as another node would hold it.
func (p *party) record() *PeerRecord {
	r := p.key.PeerRecord
	return &r
}

// pair builds machines for a (initiator) and b (responder). knownB is what
// a holds of b, knownA what b holds of a.
func pair(t testing.TB, a, b *party, knownB, knownA *PeerRecord, mod func(*Config)) (*Machine, *Machine) {
	t.Helper()
	ca := Config{Role: Initiator, Identity: a.sk, Remote: b.id, Own: a.key, Known: knownB, Epoch: 1}
	cb := Config{Role: Responder, Identity: b.sk, Remote: a.id, Own: b.key, Known: knownA, Epoch: 1}
	if mod != nil {
		mod(&ca)
		mod(&cb)
	}
	ma, err := NewMachine(ca)
	require.NoError(t, err)
	mb, err := NewMachine(cb)
	require.NoError(t, err)
	return ma, mb
}

// wire records every frame in the order it travelled.
type wire struct {
	from  Role
	frame Frame
}

// pump runs two machines against each other in memory, delivering frames in
// order, alternately. intercept may replace or drop a frame (return nil).
func pump(t testing.TB, a, b *Machine, intercept func(i int, w wire) []byte) ([]wire, error, error) {
	t.Helper()
	out, err := a.Start()
	if err != nil {
		return nil, err, nil
	}
	var log []wire
	queues := map[Role][]Frame{Initiator: out}
	machines := map[Role]*Machine{Initiator: a, Responder: b}
	errs := map[Role]error{}
	for step := 0; step < 10000; step++ {
		progressed := false
		for _, from := range []Role{Initiator, Responder} {
			to := from.other()
			for len(queues[from]) > 0 && errs[to] == nil && errs[from] == nil {
				f := queues[from][0]
				queues[from] = queues[from][1:]
				w := wire{from: from, frame: f}
				bytes := f.Bytes
				if intercept != nil {
					bytes = intercept(len(log), w)
				}
				log = append(log, w)
				progressed = true
				if bytes == nil {
					continue
				}
				more, err := machines[to].Consume(bytes)
				if err != nil {
					errs[to] = err
					if ab := machines[to].Fail(err); ab != nil {
						queues[to] = []Frame{*ab}
					}
					continue
				}
				queues[to] = append(queues[to], more...)
			}
		}
		if (a.Done() && b.Done()) || !progressed {
			break
		}
	}
	return log, errs[Initiator], errs[Responder]
}
