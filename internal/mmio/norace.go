//go:build !race

package mmio

import "unsafe"

// raceRelease does nothing without the race detector (race.go).
func raceRelease(unsafe.Pointer) {}
