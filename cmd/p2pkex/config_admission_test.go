package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/node"
)

func TestConfigAdmission(t *testing.T) {
	dir := t.TempDir()
	cfg, err := loadConfig(dir)
	require.NoError(t, err)
	require.Equal(t, node.DefaultKnownReserve, cfg.Admission.KnownReserve)
	require.Equal(t, duration(node.DefaultUnknownPhase1Timeout), cfg.Admission.UnknownPhase1Timeout)

	require.NoError(t, os.WriteFile(filepath.Join(dir, configFile),
		[]byte(`{"admission": {"inbound_per_origin": 4, "unknown_phase1_timeout": "500ms"}}`), 0o600))
	cfg, err = loadConfig(dir)
	require.NoError(t, err)
	require.Equal(t, 4, cfg.Admission.PerOrigin)
	require.Equal(t, duration(500*time.Millisecond), cfg.Admission.UnknownPhase1Timeout)
	require.Equal(t, node.DefaultOriginPrefixV4, cfg.Admission.OriginPrefixV4, "left out: the default")
	_, err = node.HostOptions(cfg.Admission.options()...)
	require.NoError(t, err, "the defaults and settings are valid node options")

	for name, body := range map[string]string{
		"reserve above total": `{"limits": {"inbound_total": 8}}`, // known_reserve stays 64
		"negative reserve":    `{"admission": {"known_reserve": -1}}`,
		"zero per origin":     `{"admission": {"inbound_per_origin": 0}}`,
		"prefix":              `{"admission": {"origin_prefix_v4": 33}}`,
		"zero phase 1":        `{"admission": {"unknown_phase1_timeout": "0s"}}`,
		"zero msg streams":    `{"admission": {"message_streams": 0}}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, configFile), []byte(body), 0o600))
			_, err := loadConfig(dir)
			require.ErrorContains(t, err, "admission.")
		})
	}
}
