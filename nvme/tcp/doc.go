// Package tcp is gonvme's NVMe/TCP host: it reaches a controller that a
// target (Linux's nvmet, SPDK, gonvme's own nvme/tcp/target) serves over
// TCP, and gives back the same *nvme.Controller as pcie.Open.
package tcp
