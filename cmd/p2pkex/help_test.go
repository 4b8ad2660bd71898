package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEveryCommandHelp: every command's --help has a one-line summary, its
// options, at least one example, and no markup leaking (backticks are
// urfave/cli's placeholder marks and must not reach the reader).
func TestEveryCommandHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	app := newApp(&out, &errOut)
	require.NotEmpty(t, app.Commands)
	for _, c := range app.Commands {
		if c.Name == "help" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			require.NotEmpty(t, c.Usage, "no summary")
			require.NotContains(t, c.Usage, "\n", "the summary is one line")
			out.Reset()
			errOut.Reset()
			err := newApp(&out, &errOut).Run(context.Background(), []string{"p2pkex", c.Name, "--help"})
			require.NoError(t, err, "stderr: %s", errOut.String())
			help := out.String()
			require.Contains(t, help, c.Usage)
			require.Contains(t, help, "OPTIONS:")
			require.Regexp(t, `(?m)^\s*Examples?:`, help, "no example")
			require.Contains(t, help, "p2pkex "+c.Name, "the example runs the command")
			require.False(t, strings.Contains(help, "`"), "markup leaks:\n%s", help)
		})
	}
}
