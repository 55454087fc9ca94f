//go:build !cgo || !linux

package kabi

// Available is false: without cgo the header cannot be read.
const Available = false

// Structs and Consts are empty without cgo.
var (
	Structs = map[string]Struct{}
	Consts  = map[string]uint64{}
)
