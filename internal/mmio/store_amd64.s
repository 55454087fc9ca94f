#include "textflag.h"

// The register stores of mmio.go: one plain MOVL each, never a locked
// instruction (doc.go). The call into this file is the compiler barrier;
// x86 keeps stores in program order, so nothing more is needed.

// func store32(p unsafe.Pointer, v uint32)
TEXT ·store32(SB), NOSPLIT, $0-12
	MOVQ	p+0(FP), AX
	MOVL	v+8(FP), CX
	MOVL	CX, 0(AX)
	RET

// func store64(p unsafe.Pointer, v uint64)
//
// Two 32-bit stores, the low half at p first, then the high half at p+4.
TEXT ·store64(SB), NOSPLIT, $0-16
	MOVQ	p+0(FP), AX
	MOVQ	v+8(FP), CX
	MOVL	CX, 0(AX)
	SHRQ	$32, CX
	MOVL	CX, 4(AX)
	RET
