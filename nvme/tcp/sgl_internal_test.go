package tcp

import (
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

func parseSGL(d spec.SGLDescriptor) (fabrics.DataKind, uint64, uint32, error) {
	return fabrics.ParseDataSGL(d)
}
