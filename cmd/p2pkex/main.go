// Command p2pkex runs the p2pkex key exchange: a demo of Alice and Bob in
// one process, a daemon that serves the exchange, and one-shot commands
// that exchange keys with a running daemon and show a repo's identity.
//
// Run "p2pkex help" for the commands and "p2pkex demo" first.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
