package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/conformance"
)

// conformanceCommand tests another implementation of the protocol
// (package conformance, docs/PROTOCOL.md section 20.1).
func conformanceCommand() *cli.Command {
	common := func() []cli.Flag {
		return []cli.Flag{
			&cli.StringFlag{Name: "run", Usage: "run only the cases whose name or section matches `REGEXP`"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.BoolFlag{Name: "slow", Usage: "also run the cases that wait for the phase timeout"},
			&cli.DurationFlag{Name: "wait", Value: conformance.DefaultWait, Usage: "how long the implementation may take to answer a notice"},
			&cli.BoolFlag{Name: "verbose", Usage: "print each case as it ends, on stderr"},
		}
	}
	return &cli.Command{
		Name:  "conformance",
		Usage: "test another implementation of /p2pkex/1.0.0 against the specification",
		Description: `Runs the conformance suite over libp2p against an implementation under
test: the happy paths and, for every validation rule that can be driven
from the wire, a case that breaks exactly that rule and expects the rule's
status and no key. Each case names its section of docs/PROTOCOL.md. The
suite creates its own identities. The exit status is 1 if a case fails.

Examples:
  p2pkex conformance responder --peer /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...
  p2pkex conformance initiator --addr-file /tmp/suite.addr
  p2pkex conformance list`,
		Commands: []*cli.Command{
			{
				Name:  "responder",
				Usage: "test a responder: the suite initiates every exchange with the peer",
				Description: `Dials the implementation at --peer and runs every case against it as
the initiator.

Example:
  p2pkex conformance responder --peer /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...`,
				Flags: append(common(),
					&cli.StringFlag{Name: "peer", Usage: "the implementation's `MULTIADDR`, ending in /p2p/<peer ID>"}),
				Action: func(ctx context.Context, c *cli.Command) error {
					if err := noArgs(c); err != nil {
						return err
					}
					opts, err := conformanceOptions(c)
					if err != nil {
						return err
					}
					if c.String("peer") == "" {
						return usagef("conformance responder: --peer MULTIADDR is required")
					}
					addr, err := ma.NewMultiaddr(c.String("peer"))
					if err != nil {
						return usagef("conformance responder: --peer %q: %v", c.String("peer"), err)
					}
					ai, err := peer.AddrInfoFromP2pAddr(addr)
					if err != nil {
						return usagef("conformance responder: --peer %q must end in /p2p/<peer ID>", c.String("peer"))
					}
					rep, err := conformance.RunResponder(ctx, *ai, opts)
					if err != nil {
						return err
					}
					return printReport(c, rep)
				},
			},
			{
				Name:  "initiator",
				Usage: "test an initiator: the suite listens and answers the exchanges the implementation opens",
				Description: `Prints the address to dial on stderr (and to --addr-file), then waits for
the implementation under test to run its exchanges with it, one after
another, as many as the cases need (about one per case). Run the
implementation's exchange command against the address in a loop until
this command exits; exchanges that the suite breaks on purpose fail.

Example:
  p2pkex conformance initiator --addr-file /tmp/suite.addr`,
				Flags: append(common(),
					&cli.StringSliceFlag{Name: "listen", Usage: "listen on `MULTIADDR` (default /ip4/127.0.0.1/tcp/0)"},
					&cli.StringFlag{Name: "addr-file", Usage: "also write the address to dial to `FILE`"},
					&cli.DurationFlag{Name: "timeout", Value: time.Minute, Usage: "give up when the implementation opens no exchange for this long"},
				),
				Action: func(ctx context.Context, c *cli.Command) error {
					if err := noArgs(c); err != nil {
						return err
					}
					opts, err := conformanceOptions(c)
					if err != nil {
						return err
					}
					l, err := conformance.Listen(c.StringSlice("listen")...)
					if err != nil {
						return err
					}
					defer l.Close()
					addrs := l.Addrs()
					if len(addrs) == 0 {
						return errors.New("conformance initiator: the suite listens on no address")
					}
					fmt.Fprintf(c.Root().ErrWriter, "conformance: dial %s (about %d exchanges)\n", addrs[0], conformance.Expected(opts))
					if f := c.String("addr-file"); f != "" {
						if err := os.WriteFile(f, []byte(addrs[0].String()+"\n"), 0o644); err != nil {
							return fmt.Errorf("write --addr-file: %w", err)
						}
					}
					rep, err := l.Run(ctx, opts, c.Duration("timeout"))
					if err != nil {
						return err
					}
					return printReport(c, rep)
				},
			},
			{
				Name:  "list",
				Usage: "list the cases",
				Description: `One line per case: its section of docs/PROTOCOL.md, name, roles, expected
result and summary.

Examples:
  p2pkex conformance list
  p2pkex conformance list --run 'KEY'`,
				Flags: []cli.Flag{&cli.StringFlag{Name: "run", Usage: "list only the cases whose name or section matches `REGEXP`"}},
				Action: func(ctx context.Context, c *cli.Command) error {
					if err := noArgs(c); err != nil {
						return err
					}
					re, err := runFlag(c)
					if err != nil {
						return err
					}
					tw := tabwriter.NewWriter(c.Root().Writer, 0, 0, 2, ' ', 0)
					fmt.Fprintln(tw, "SECTION\tCASE\tROLES\tEXPECT\tSUMMARY")
					for _, ci := range conformance.Cases() {
						if re != nil && !re.MatchString(ci.Name) && !re.MatchString(ci.Section) {
							continue
						}
						var roles []string
						if ci.Responder {
							roles = append(roles, "responder")
						}
						if ci.Initiator {
							roles = append(roles, "initiator")
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ci.Section, ci.Name, strings.Join(roles, ","), ci.Expect, ci.Summary)
					}
					return tw.Flush()
				},
			},
		},
	}
}

func runFlag(c *cli.Command) (*regexp.Regexp, error) {
	if c.String("run") == "" {
		return nil, nil
	}
	re, err := regexp.Compile(c.String("run"))
	if err != nil {
		return nil, usagef("conformance %s: --run: %v", c.Name, err)
	}
	return re, nil
}

func conformanceOptions(c *cli.Command) (conformance.Options, error) {
	re, err := runFlag(c)
	if err != nil {
		return conformance.Options{}, err
	}
	if c.Duration("wait") <= 0 {
		return conformance.Options{}, usagef("conformance %s: --wait must be positive", c.Name)
	}
	opts := conformance.Options{Run: re, Wait: c.Duration("wait"), Slow: c.Bool("slow")}
	if c.Bool("verbose") {
		opts.Progress = c.Root().ErrWriter
	}
	return opts, nil
}

// errCasesFailed is the error of a run in which a case failed: the report
// says which.
var errCasesFailed = errors.New("conformance: cases failed")

func printReport(c *cli.Command, rep *conformance.Report) error {
	w := c.Root().Writer
	var err error
	if c.Bool("json") {
		err = rep.WriteJSON(w)
	} else {
		err = rep.WriteTable(w)
	}
	if err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("%w: %d of %d", errCasesFailed, rep.Failed, len(rep.Results))
	}
	return nil
}
