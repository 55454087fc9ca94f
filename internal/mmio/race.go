//go:build race

package mmio

import (
	"runtime"
	"unsafe"
)

// raceRelease tells the race detector that the register store about to
// happen at p publishes this goroutine's earlier writes, as the
// atomic.StoreUint32 it replaced did: a goroutine whose Read32 (an atomic
// load, an acquire to the detector) sees the value then reads them without
// a report. The race runtime ignores addresses outside the Go heap and
// data, so for a mapped BAR or mmap'd memory this does nothing; it matters
// for a Region over Go memory shared by goroutines.
func raceRelease(p unsafe.Pointer) { runtime.RaceRelease(p) }
