package pdu

import (
	"errors"
	"fmt"
)

// FES is the Fatal Error Status of a TermReq: why the sender ends the
// connection. NVMe/TCP 1.0a, 3.6.2.4, Figure "H2CTermReq PDU: FES".
type FES uint16

// Fatal error status values.
const (
	// FESNone is not on the wire: an error that ends the connection
	// without a TermReq (a malformed TermReq from the peer, or a data
	// digest error, which fails one command only).
	FESNone FES = 0
	// FESInvalidHeaderField: a header field holds a value the receiver
	// cannot accept. FEI is the byte offset of the field in the PDU.
	FESInvalidHeaderField FES = 0x01
	// FESPDUSequenceError: a PDU that may not come now (a second ICReq,
	// a capsule before the ICReq, an H2CData nobody asked for).
	FESPDUSequenceError FES = 0x02
	// FESHeaderDigestError: the header digest does not match. FEI is the
	// digest received.
	FESHeaderDigestError FES = 0x03
	// FESDataOutOfRange: data outside the command's buffer (DATAO+DATAL
	// or R2TO+R2TL past its transfer length).
	FESDataOutOfRange FES = 0x04
	// FESR2TLimitExceeded: more outstanding R2Ts than MAXR2T allows. The
	// same code is later named Data Transfer Limit Exceeded and also
	// covers data PDUs longer than MAXH2CDATA or in-capsule data beyond
	// IOCCSZ.
	FESR2TLimitExceeded FES = 0x05
	// FESDataLimitExceeded is FESR2TLimitExceeded by its later name.
	FESDataLimitExceeded = FESR2TLimitExceeded
	// FESUnsupportedParameter: a parameter the receiver does not support
	// (a PDU format version other than 0). FEI is its byte offset.
	FESUnsupportedParameter FES = 0x06
)

// String returns the spec name of f.
func (f FES) String() string {
	switch f {
	case FESNone:
		return "none"
	case FESInvalidHeaderField:
		return "Invalid PDU Header Field"
	case FESPDUSequenceError:
		return "PDU Sequence Error"
	case FESHeaderDigestError:
		return "Header Digest Error"
	case FESDataOutOfRange:
		return "Data Transfer Out of Range"
	case FESR2TLimitExceeded:
		return "R2T Limit Exceeded"
	case FESUnsupportedParameter:
		return "Unsupported Parameter"
	}
	return fmt.Sprintf("Reserved FES %#x", uint16(f))
}

// Sentinels for errors.Is; every *Error matches exactly one.
var (
	ErrInvalidHeaderField   = errors.New("invalid pdu header field")
	ErrPDUSequence          = errors.New("pdu sequence error")
	ErrHeaderDigest         = errors.New("header digest error")
	ErrDataOutOfRange       = errors.New("data transfer out of range")
	ErrLimitExceeded        = errors.New("r2t or data transfer limit exceeded")
	ErrUnsupportedParameter = errors.New("unsupported parameter")
	// ErrDataDigest: the data of one PDU does not match its digest. The
	// stream is still in step; the command the data belongs to fails
	// (Transient Transport Error), the connection may go on.
	ErrDataDigest = errors.New("data digest error")
	// ErrBadTermReq: the peer sent a TermReq that is itself malformed;
	// the connection ends without a TermReq in return.
	ErrBadTermReq = errors.New("malformed termination request")
)

// Error is a protocol error found in what the peer sent. Every error the
// Reader and the Check functions return for network input is an *Error.
type Error struct {
	// FES is the status to send in a TermReq before closing, or FESNone
	// to close without one.
	FES FES
	// FEI is the fatal error information for the TermReq: the byte offset
	// of the bad field, or the header digest received.
	FEI uint32
	// Header is a copy of the header of the PDU in error, at most
	// TermReqMaxErrorData bytes: the error data of the TermReq. Nil when
	// the error is not about one PDU's header.
	Header []byte
	// Type is the type of the PDU in error.
	Type Type
	// Reason says what was wrong, for people.
	Reason string

	sentinel error
}

// Error describes e.
func (e *Error) Error() string {
	return fmt.Sprintf("nvme/tcp %v: %s: %v", e.Type, e.Reason, e.sentinel)
}

// Unwrap returns the sentinel e matches.
func (e *Error) Unwrap() error { return e.sentinel }

// Fatal reports whether the connection must end: every error but a data
// digest error.
func (e *Error) Fatal() bool { return e.sentinel != ErrDataDigest }

// NewError returns the *Error for a fatal error status found by session
// logic above the Reader (a CCCID that is not outstanding, an R2T past the
// command's data). header is the PDU header in error, copied; it may be nil.
func NewError(fes FES, fei uint32, t Type, header []byte, format string, args ...any) *Error {
	e := &Error{FES: fes, FEI: fei, Type: t, Reason: fmt.Sprintf(format, args...)}
	switch fes {
	case FESInvalidHeaderField:
		e.sentinel = ErrInvalidHeaderField
	case FESPDUSequenceError:
		e.sentinel = ErrPDUSequence
	case FESHeaderDigestError:
		e.sentinel = ErrHeaderDigest
	case FESDataOutOfRange:
		e.sentinel = ErrDataOutOfRange
	case FESR2TLimitExceeded:
		e.sentinel = ErrLimitExceeded
	case FESUnsupportedParameter:
		e.sentinel = ErrUnsupportedParameter
	default:
		e.FES = FESNone
		e.sentinel = ErrBadTermReq
	}
	if len(header) > 0 {
		e.Header = append([]byte(nil), header[:min(len(header), TermReqMaxErrorData)]...)
	}
	return e
}

func dataDigestError(t Type, got, want uint32) *Error {
	return &Error{FES: FESNone, Type: t, sentinel: ErrDataDigest,
		Reason: fmt.Sprintf("data digest %#08x, computed %#08x", got, want)}
}
