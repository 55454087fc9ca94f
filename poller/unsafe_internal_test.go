package poller

import (
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/nvme"
)

const sizeOfRequest = unsafe.Sizeof(nvme.Request{})

func uintptrOf(r *nvme.Request) uintptr { return uintptr(unsafe.Pointer(r)) }
