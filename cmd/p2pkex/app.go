package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/gologshim"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/api/server"
)

// usageError marks a mistake in the command line, reported with exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// lineError is the line a user reads, keeping the error behind it for
// errors.Is and errors.As (a cancelled context, a node's trust events).
type lineError struct {
	msg string
	err error
}

func (e *lineError) Error() string { return e.msg }
func (e *lineError) Unwrap() error { return e.err }

func init() {
	// One log format: go-libp2p's slog output goes through go-log.
	gologshim.SetDefaultHandler(golog.SlogHandler())
	quietLibraryLogs() // usage.go
}

// run is main without the process: it returns the exit code. Every error is
// one line on stderr, prefixed "p2pkex: ".
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runIO(ctx, args, os.Stdin, stdout, stderr)
}

// runIO is run with standard input stdin (what verify and forget read a
// person's answer from).
func runIO(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	app.Reader = stdin
	err := app.Run(ctx, globalFlagsAfterCommand(args))
	if err == nil {
		return 0
	}
	if ctx.Err() != nil {
		// Ctrl-C (or SIGTERM): whatever the command was doing failed
		// because it was interrupted, which the shell's 130 says.
		return 130
	}
	fmt.Fprintf(stderr, "p2pkex: %s\n", oneLine(err))
	if isUsage(err) || isFlagError(err) { // backend.go
		return 2
	}
	return 1
}

// oneLine is err as the one line run prints (server.OneLine: the API's
// errors and the command's own read alike).
func oneLine(err error) string { return server.OneLine(err) }

// isFlagError recognises urfave/cli's own parse errors.
func isFlagError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "flag provided but not defined") ||
		strings.Contains(s, "flag needs an argument") ||
		strings.Contains(s, "invalid value") ||
		strings.Contains(s, "Required flag")
}

const appDescription = `p2pkex exchanges symmetric keys between libp2p peers in three phases:
fingerprints first, public keys only when missing or stale, then both
halves of the key, sealed and signed, confirmed by both sides.

Start with:
  p2pkex demo

Two nodes on one machine:
  p2pkex init --repo /tmp/alice && p2pkex init --repo /tmp/bob
  p2pkex daemon --repo /tmp/bob --listen /ip4/127.0.0.1/tcp/4001
  p2pkex exchange --repo /tmp/alice /ip4/127.0.0.1/tcp/4001/p2p/<Bob's peer ID>
  p2pkex id --repo /tmp/bob

Logging: GOLOG_LOG_LEVEL (for example "p2pkex/node=debug").`

func newApp(stdout, stderr io.Writer) *cli.Command {
	app := &cli.Command{
		Name:        "p2pkex",
		Usage:       "peer-to-peer key exchange on libp2p",
		Description: appDescription,
		Version:     buildVersion().Version, // version.go; --version
		Writer:      stdout,
		ErrWriter:   stderr,
		// Errors are printed once, by run.
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
		Flags:          rootGlobalFlags(), // usage.go
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Len() > 0 {
				return unknownCommand(c, c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Commands: []*cli.Command{
			demoCommand(),
			initCommand(),
			daemonCommand(),
			exchangeCommand(),
			idCommand(),
			rotateCommand(),
			sendCommand(),
			inboxCommand(),  // inbox.go
			verifyCommand(), // verify.go
			forgetCommand(), // forget.go
			chatCommand(),   // chat.go
			peersCommand(),
			connectCommand(),
			keysCommand(),
			statusCommand(),
			benchCommand(),
			conformanceCommand(), // conformance.go
			exportKeyCommand(),   // exportkey.go
			versionCommand(),     // version.go
			shutdownCommand(),    // shutdown.go
		},
	}
	oneLineUsageErrors(app)
	return app
}

func repoFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "repo",
		Usage:   "the repo `DIR` (identity, config, store) (default: ~/.p2pkex)",
		Sources: cli.EnvVars("P2PKEX_PATH"),
		Value:   defaultRepoDir(), // repo.go
		// The usage says the default once, as ~/.p2pkex rather than the
		// expanded home directory.
		HideDefault: true,
	}
}

// noArgs rejects stray arguments.
func noArgs(c *cli.Command) error {
	if c.Args().Len() > 0 {
		return usagef("%s: unexpected argument %q", c.Name, c.Args().First())
	}
	return nil
}
