// Package kabi reads VFIO's user API as the kernel's own header declares
// it: the size and field offsets of the structs and the values of the
// ioctl numbers and constants in <linux/vfio.h> (on Debian, from the
// linux-libc-dev package), compiled through cgo. Package vfio's tests
// compare its hand-written Go declarations (uapi.go) with these numbers,
// so a header that changes (a field added, a struct padded) fails the
// test instead of going unseen.
//
// Built without cgo (CGO_ENABLED=0, as the VM test binaries are),
// Available is false and the maps are empty; the test then skips, except
// under CI, where `go test -race` needs cgo anyway.
//
// Nothing but tests imports this package.
package kabi

// Struct is the layout of one C struct: sizeof and offsetof of each field
// named in it, by its C name.
type Struct struct {
	Size   uintptr
	Fields map[string]uintptr
}
