#include "textflag.h"

// The full fence of fence.go: MFENCE. Every earlier load and store is
// globally visible before any later one, the store->load order included,
// which x86-TSO otherwise lets go. Not a locked instruction: nothing in
// this package is one (hack/qemu lockcheck checks every instruction from
// these files).

// func Fence()
TEXT ·Fence(SB), NOSPLIT, $0-0
	MFENCE
	RET
