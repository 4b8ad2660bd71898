// Package pb holds the protobuf messages that package peerstore's bbolt store
// writes as values. It is an internal encoding, not a wire format.
//
// The file is registered as "peerstore/pb/store.proto" (generated from the
// module root) so that its path cannot collide with another store.proto in
// the global protobuf registry.
package pb

//go:generate protoc --proto_path=../.. --go_out=../.. --go_opt=paths=source_relative peerstore/pb/store.proto
