//go:build race

package node

// underRace: the race detector changes allocation counts.
const underRace = true
