package node

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMessageKeeper: the keeper has the message before Send returns, a
// node with a keeper and no subscriber accepts, and a keeper's error
// refuses the message.
func TestMessageKeeper(t *testing.T) {
	leakCheck(t)
	var mu sync.Mutex
	var kept []string
	fail := false
	keep := func(_ context.Context, m Message) error {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return errors.New("disk full")
		}
		kept = append(kept, string(m.Data))
		return nil
	}
	a, b := newNode(t), newNode(t, WithMessageKeeper(keep))
	introduce(a, b)
	exchange(t, a, b)

	// No subscriber on b: kept, so accepted; kept before Send returned.
	require.NoError(t, a.Send(ctxT(t), b.ID(), []byte("one")))
	mu.Lock()
	require.Equal(t, []string{"one"}, kept)
	mu.Unlock()

	// A subscriber still gets it.
	msgs, stop := b.Messages(0)
	defer stop()
	require.NoError(t, a.Send(ctxT(t), b.ID(), []byte("two")))
	require.Equal(t, "two", string(receive(t, msgs).Data))

	// The keeper fails: refused, not delivered.
	mu.Lock()
	fail = true
	mu.Unlock()
	err := a.Send(ctxT(t), b.ID(), []byte("three"))
	require.ErrorIs(t, err, ErrMessageInternal)
	select {
	case m := <-msgs:
		t.Fatalf("refused message delivered: %q", m.Data)
	default:
	}
	mu.Lock()
	require.Equal(t, []string{"one", "two"}, kept)
	mu.Unlock()
}
