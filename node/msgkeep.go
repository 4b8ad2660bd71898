package node

import (
	"context"
	"errors"
	"fmt"
)

// MessageKeeper keeps a received message before the sender is answered:
// an inbox that must not lose a message its sender was told was accepted
// writes it here, durably, and returns nil. m.Data is the node's: the
// keeper copies what it keeps beyond the call.
type MessageKeeper func(ctx context.Context, m Message) error

// WithMessageKeeper makes the node call keep for every message it receives
// and authenticates, before it answers the sender. An error refuses the
// message (the sender gets ErrMessageInternal). With a keeper, a message is
// accepted once kept: subscribers ([Node.Messages]) still get it, but a
// node without subscribers no longer refuses it with ErrNotDelivered.
func WithMessageKeeper(keep MessageKeeper) Option {
	return func(c *config) error {
		if keep == nil {
			return errors.New("nil message keeper")
		}
		c.msgKeep = keep
		return nil
	}
}

// keepMessage hands msg to the keeper, if any, then to the subscribers.
func (n *Node) keepMessage(ctx context.Context, msg *Message) error {
	if n.cfg.msgKeep == nil {
		return n.msg.deliver(ctx, msg)
	}
	if err := n.cfg.msgKeep(ctx, *msg); err != nil {
		log.Debugw("message keeper failed", "peer", msg.From, "err", err)
		return fmt.Errorf("%w: keeping it: %v", ErrMessageInternal, err)
	}
	// Kept: the subscribers are told, and none is needed.
	_ = n.msg.deliver(ctx, msg)
	return nil
}
