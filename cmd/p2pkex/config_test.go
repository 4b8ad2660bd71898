package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConfigRoundTripAndMode(t *testing.T) {
	dir := t.TempDir()
	cfg, err := loadConfig(dir) // none: the defaults
	require.NoError(t, err)
	require.Equal(t, defaultConfig(), cfg)
	require.Empty(t, cfg.Bootstrap, "the bootstrap list is empty by default")

	cfg.Limits.PhaseTimeout = duration(3 * time.Second)
	cfg.Discovery.MDNS = false
	require.NoError(t, writeConfig(dir, cfg))
	st, err := os.Stat(filepath.Join(dir, configFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	got, err := loadConfig(dir)
	require.NoError(t, err)
	require.Equal(t, cfg, got)

	// No temporary file is left behind.
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)

	// A partial file keeps the defaults for what it leaves out.
	require.NoError(t, os.WriteFile(filepath.Join(dir, configFile), []byte(`{"limits": {"notice_size": 256}}`), 0o600))
	got, err = loadConfig(dir)
	require.NoError(t, err)
	require.Equal(t, 256, got.Limits.NoticeSize)
	require.Equal(t, defaultConfig().Limits.InboundTotal, got.Limits.InboundTotal)
	require.True(t, got.Discovery.MDNS)
}

func TestConfigRejects(t *testing.T) {
	for name, body := range map[string]string{
		"unknown field":   `{"listn": []}`,
		"bad listen":      `{"listen": ["/ip4/1.2.3"]}`,
		"bootstrap no id": `{"bootstrap": ["/ip4/127.0.0.1/tcp/1"]}`,
		"relay no addr":   `{"relays": ["/p2p/12D3KooWJxTv3PXeD23apMf6McRS3wjsuMsnaZ1X7ufxB54PrL2v"]}`,
		"notice size":     `{"limits": {"notice_size": 1}}`,
		"zero inbound":    `{"limits": {"inbound_total": 0}}`,
		"bad duration":    `{"limits": {"phase_timeout": "soon"}}`,
		"negative grace":  `{"messages": {"grace": "-1s"}}`,
		"no rendezvous":   `{"discovery": {"rendezvous": ""}}`,
		"not json":        `listen = 1`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, configFile), []byte(body), 0o600))
			_, err := loadConfig(dir)
			require.Error(t, err)
			require.Contains(t, err.Error(), configFile)
		})
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(duration(90 * time.Second))
	require.NoError(t, err)
	require.Equal(t, `"1m30s"`, string(b))
}
