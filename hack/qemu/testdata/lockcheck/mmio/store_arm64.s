//go:build lockcheck_asm

#include "textflag.h"

TEXT ·store32(SB), NOSPLIT|NOFRAME, $0-12
	MOVD	p+0(FP), R0
	MOVWU	v+8(FP), R1
	DMB	$2
	MOVW	R1, (R0)
	RET

TEXT ·store64(SB), NOSPLIT|NOFRAME, $0-16
	MOVD	p+0(FP), R0
	MOVD	v+8(FP), R1
	DMB	$2
	MOVW	R1, (R0)
	LSR	$32, R1, R1
	DMB	$2
	MOVW	R1, 4(R0)
	RET
