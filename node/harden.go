package node

// ProtectProcess limits where the process's secrets can leak outside the
// store (docs/SECURITY.md, "Destroyed keys"): it sets RLIMIT_CORE to 0, so
// that a crash writes no core dump holding session or exchange keys, and,
// on Linux, clears the "dumpable" flag (prctl PR_SET_DUMPABLE): no core
// dump even if the limit is raised again, and processes of the same user
// that are not root cannot ptrace it or read its memory through /proc. It
// affects the whole process, so the node never calls it on its own: the
// p2pkex daemon does, and an application embedding the node decides for
// itself. Memory that holds the store's shredding keys is also locked
// against swapping and left out of core dumps where the platform allows
// (package peerstore), whether or not this is called.
func ProtectProcess() error { return protectProcess() }
