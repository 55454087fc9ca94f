//go:build amd64 || arm64

package mmio

// Fence is a full memory barrier: every load and store the goroutine
// made before it is globally visible before any load or store after it,
// a store followed by a load included.
//
// It exists for one protocol, the shadow doorbells of NVMe's Doorbell
// Buffer Config (NVMe Base 2.0, 5.8; the host's side as Linux's
// nvme_dbbuf_update_and_check_event): the host stores a queue's new tail
// or head in the shadow doorbell page, then reads the controller's
// EventIdx to learn whether the controller also wants the MMIO doorbell
// write. The controller (in practice a hypervisor thread emulating it)
// does the mirror image: it stores EventIdx, then reads the shadow
// doorbell. Each side's store must be visible before its own load, or
// both sides can read the other's old value: the host skips the doorbell
// and the controller goes to sleep with a command in its queue. That is
// the store->load order, the only one that x86 does not keep and that
// arm64's store barriers (DMB ST, the DMB OSHST of store32) do not give;
// no other access of the driver needs it, so this is the only full fence
// in the package. Register stores stay plain stores (doc.go).
//
//	amd64: MFENCE. (A locked operation on the stack orders the same way and
//	       is what Linux's smp_mb uses, but nothing in this package may be
//	       a locked instruction: hack/qemu lockcheck reads every one.)
//	arm64: DMB ISH: a full barrier over the inner shareable domain, the
//	       CPUs, where the emulating controller runs (Linux's smp_mb).
//
// Like the stores, it is a call into assembly the compiler cannot see
// into, so it is also a compiler barrier. Any goroutine.
func Fence()
