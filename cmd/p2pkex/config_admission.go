package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/p2pkex/p2pkex/node"
)

// admissionConfig is config.json's "admission": how the daemon shares its
// inbound exchanges and message streams between the peers it knows and
// fresh identities (docs/SECURITY.md, "Admission"; node/admission.go).
type admissionConfig struct {
	// KnownReserve: inbound exchange slots (of limits.inbound_total) that
	// only known peers — peers whose record or session the repo holds —
	// may take. Default node.DefaultKnownReserve (64).
	KnownReserve int `json:"known_reserve"`
	// PerOrigin: inbound exchanges of unknown peers from one network
	// origin at once. Default node.DefaultMaxInboundPerOrigin (16).
	PerOrigin int `json:"inbound_per_origin"`
	// OriginPrefixV4 and OriginPrefixV6: the prefix lengths that make an
	// origin. Defaults node.DefaultOriginPrefixV4 (24) and
	// node.DefaultOriginPrefixV6 (48).
	OriginPrefixV4 int `json:"origin_prefix_v4"`
	OriginPrefixV6 int `json:"origin_prefix_v6"`
	// UnknownPhase1Timeout: the time an unknown peer has for phase 1 of an
	// inbound exchange, from its stream's arrival (known peers get
	// limits.phase_timeout). Default node.DefaultUnknownPhase1Timeout
	// ("2s").
	UnknownPhase1Timeout duration `json:"unknown_phase1_timeout"`
	// MessageStreams and MessageStreamsPerPeer: inbound message streams
	// past their header check at once, in total and per peer (the
	// resource-manager limits of the p2pkex.msg service). Defaults
	// node.DefaultMaxMessageStreams (128) and
	// node.DefaultMaxMessageStreamsPerPeer (16).
	MessageStreams        int `json:"message_streams"`
	MessageStreamsPerPeer int `json:"message_streams_per_peer"`
}

func defaultAdmissionConfig() admissionConfig {
	return admissionConfig{
		KnownReserve:          node.DefaultKnownReserve,
		PerOrigin:             node.DefaultMaxInboundPerOrigin,
		OriginPrefixV4:        node.DefaultOriginPrefixV4,
		OriginPrefixV6:        node.DefaultOriginPrefixV6,
		UnknownPhase1Timeout:  duration(node.DefaultUnknownPhase1Timeout),
		MessageStreams:        node.DefaultMaxMessageStreams,
		MessageStreamsPerPeer: node.DefaultMaxMessageStreamsPerPeer,
	}
}

// check validates the admission settings against the inbound total.
func (a admissionConfig) check(inboundTotal int) error {
	if a.KnownReserve < 0 || a.KnownReserve > inboundTotal {
		return fmt.Errorf("admission.known_reserve %d outside [0, limits.inbound_total = %d]", a.KnownReserve, inboundTotal)
	}
	if a.PerOrigin < 1 {
		return errors.New("admission.inbound_per_origin must be at least 1")
	}
	if a.OriginPrefixV4 < 8 || a.OriginPrefixV4 > 32 || a.OriginPrefixV6 < 16 || a.OriginPrefixV6 > 128 {
		return errors.New("admission.origin_prefix_v4 must be in [8, 32] and origin_prefix_v6 in [16, 128]")
	}
	if a.UnknownPhase1Timeout <= 0 {
		return errors.New("admission.unknown_phase1_timeout must be positive")
	}
	if a.MessageStreams < 1 || a.MessageStreamsPerPeer < 1 {
		return errors.New("admission.message_streams and admission.message_streams_per_peer must be at least 1")
	}
	return nil
}

// options are the node options of the admission settings.
func (a admissionConfig) options() []node.Option {
	return []node.Option{
		node.WithKnownReserve(a.KnownReserve),
		node.WithOriginLimit(a.PerOrigin, a.OriginPrefixV4, a.OriginPrefixV6),
		node.WithUnknownPhase1Timeout(time.Duration(a.UnknownPhase1Timeout)),
		node.WithMessageStreamLimits(a.MessageStreams, a.MessageStreamsPerPeer),
	}
}
