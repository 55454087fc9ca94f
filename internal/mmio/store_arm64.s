#include "textflag.h"

// The register stores of mmio.go, as Linux's writel on arm64: DMB OSHST
// (its __iowmb, so earlier stores to DMA memory are observable by the
// device first), then one plain 32-bit STR (MOVW). Never a load-exclusive
// or atomic instruction (doc.go).

// func store32(p unsafe.Pointer, v uint32)
TEXT ·store32(SB), NOSPLIT|NOFRAME, $0-12
	MOVD	p+0(FP), R0
	MOVWU	v+8(FP), R1
	DMB	$2	// DMB OSHST
	MOVW	R1, (R0)
	RET

// func store64(p unsafe.Pointer, v uint64)
//
// Two writel: the low half at p first, then the high half at p+4, each
// after its own barrier.
TEXT ·store64(SB), NOSPLIT|NOFRAME, $0-16
	MOVD	p+0(FP), R0
	MOVD	v+8(FP), R1
	DMB	$2	// DMB OSHST
	MOVW	R1, (R0)
	LSR	$32, R1, R1
	DMB	$2	// DMB OSHST
	MOVW	R1, 4(R0)
	RET
