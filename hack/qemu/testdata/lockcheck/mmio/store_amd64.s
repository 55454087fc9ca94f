//go:build lockcheck_asm

#include "textflag.h"

TEXT ·store32(SB), NOSPLIT, $0-12
	MOVQ	p+0(FP), AX
	MOVL	v+8(FP), CX
	MOVL	CX, 0(AX)
	RET

TEXT ·store64(SB), NOSPLIT, $0-16
	MOVQ	p+0(FP), AX
	MOVQ	v+8(FP), CX
	MOVL	CX, 0(AX)
	SHRQ	$32, CX
	MOVL	CX, 4(AX)
	RET
