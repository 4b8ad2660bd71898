// Package pb holds the wire messages of /p2pkex/1.0.0. The schema is
// p2pkex.proto; docs/PROTOCOL.md is its specification.
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative p2pkex.proto
