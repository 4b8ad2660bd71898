//go:build race

package protocol

// underRace is whether the tests run under the race detector, which
// changes allocation counts (sync.Pool drops items at random).
const underRace = true
