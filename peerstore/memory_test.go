package peerstore_test

import (
	"testing"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/peerstore/storetest"
)

func TestMemory(t *testing.T) {
	storetest.TestStore(t, func(*testing.T) peerstore.Store { return peerstore.NewMemory() }, nil)
}
