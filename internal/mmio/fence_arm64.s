#include "textflag.h"

// The full fence of fence.go, as Linux's smp_mb on arm64: DMB ISH orders
// every earlier load and store before every later one for all observers
// in the inner shareable domain (the CPUs, among them the one emulating
// the controller).

// func Fence()
TEXT ·Fence(SB), NOSPLIT|NOFRAME, $0-0
	DMB	$11	// DMB ISH
	RET
