package bench

// Engines of the NVMe/TCP rows (`bench --tcp`): the same 4 KiB random
// reads against one kernel target (nvmet on 127.0.0.1:4420, exporting the
// emulated controller's namespace through the kernel nvme driver), driven
// by two hosts in the same guest.
const (
	// EngineTCPKernelIRQ is fio io_uring (hipri=0) on the block device
	// the kernel's nvme-tcp initiator made (nvme connect).
	EngineTCPKernelIRQ = "nvme-tcp-irq"
	// EngineTCPGonvme is `nvmectl perf tcp://...`: gonvme's host.
	EngineTCPGonvme = "gonvme-tcp"
)
