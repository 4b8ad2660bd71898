// Package failpoint lets crash tests kill the process at chosen points.
//
// Failpoints exist only for crash tests (node/crash_test.go): a test runs a
// child process with the environment variable [EnvVar] set to the name of
// one failpoint, and the child kills itself with SIGKILL the moment it
// reaches the matching [Inject] call, the way a power cut or the OOM killer
// would stop it. No deferred function runs, no file is closed, nothing is
// flushed beyond what the code itself already synced.
//
// In every other process [Inject] is a no-op: the variable is read once,
// when the package is initialised, and each call compares two strings.
//
// # Failpoints
//
// The names are the constants below. Each store method that writes a
// session key or an exchange key has three: at its entry, before anything
// is written ("before-write"); inside its bbolt transaction, after the puts
// and before the transaction commits ("after-write"); and after the
// transaction has committed and been synced ("after-commit").
package failpoint

import "os"

// EnvVar names the environment variable that arms one failpoint.
const EnvVar = "P2PKEX_FAILPOINT"

// The failpoints of peerstore's bbolt store.
const (
	// CommitBeforeWrite: entry of CommitExchange, nothing written yet.
	CommitBeforeWrite = "commit-before-write"
	// CommitAfterWrite: inside CommitExchange's transaction, after the
	// session key and the peer's record were put, before the commit.
	CommitAfterWrite = "commit-after-write"
	// CommitAfterCommit: CommitExchange's transaction has committed; the
	// pruned epochs' shredding slots are not yet wiped.
	CommitAfterCommit = "commit-after-commit"
	// RotateBeforeWrite: entry of RotateExchangeKey, nothing written yet.
	RotateBeforeWrite = "rotate-before-write"
	// RotateAfterWrite: inside RotateExchangeKey's transaction, after the
	// new current and previous keys were put, before the commit.
	RotateAfterWrite = "rotate-after-write"
	// RotateAfterCommit: RotateExchangeKey's transaction has committed;
	// the destroyed key's shredding slots are not yet wiped.
	RotateAfterCommit = "rotate-after-commit"
	// DeleteSessionsAfterWrite: inside the transaction that deletes a
	// peer's sessions (peerstore's deletePeerSessions), before the commit.
	DeleteSessionsAfterWrite = "delete-sessions-after-write"
	// DeleteSessionsAfterCommit: that transaction has committed; the
	// deleted keys' shredding slots are not yet wiped.
	DeleteSessionsAfterCommit = "delete-sessions-after-commit"
	// ShredAfterWipe: a store method's shredding slots are overwritten but
	// the key file is not yet synced (peerstore/shred.go).
	ShredAfterWipe = "shred-after-wipe"
	// BatchAfterWrite: inside a group commit of two or more
	// CommitExchange calls (peerstore's commitBatch), after every one of
	// them was written, before the shared transaction commits.
	BatchAfterWrite = "batch-after-write"
	// BatchAfterCommit: that shared transaction has committed and been
	// synced; no caller has been answered, and the pruned epochs' slots
	// are not yet wiped.
	BatchAfterCommit = "batch-after-commit"
	// BatchAfterOverwrite: after such a shared transaction committed, the
	// pruned epochs' slots and the pool's new keys are written to the key
	// file but not yet synced; no caller has been answered.
	BatchAfterOverwrite = "batch-after-overwrite"
	// BatchWait: a group commit's leader that was handed the lead waits
	// for more callers before it writes its batch: the batch before it
	// has committed (its pruned slots' overwrite perhaps not yet synced,
	// its callers perhaps not yet answered); the queued callers have
	// written nothing.
	BatchWait = "batch-wait"
)

// armed is the failpoint this process dies at, or "" for none.
var armed = os.Getenv(EnvVar)

// Inject kills the process with SIGKILL if name is the armed failpoint, and
// does nothing otherwise. It never returns when it fires.
func Inject(name string) {
	if armed == "" || armed != name {
		return
	}
	kill()
}
