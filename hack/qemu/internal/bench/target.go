package bench

// Engines of the NVMe/TCP target rows (`hack/qemu bench --nvmf-target`):
// the guest kernel's initiator and fio read through a target on loopback.
const (
	// EngineNVMet is Linux's nvmet target (block-device backend on the
	// kernel nvme driver).
	EngineNVMet = "nvmf-nvmet"
	// EngineNVMfGonvme is gonvme's target, `nvmectl serve --nvmf`.
	EngineNVMfGonvme = "nvmf-gonvme"
	// EngineNVMfGonvmeSpin is gonvme's target with its poll group
	// polling 10 ms before it sleeps (--nvmf-spin 10ms).
	EngineNVMfGonvmeSpin = "nvmf-gonvme-spin"
)
