// Package vmtest is the guest side of gonvme's VM tests: a test declares the
// device profile it needs, and the harness (go run ./hack/qemu test) boots
// a QEMU guest with those devices and runs the test there.
//
//	func TestIdentify(t *testing.T) {
//		env := vmtest.Require(t, "4k+small-mdts") // a string literal: the harness reads it
//		c := env.Controllers()[0]
//		addr := env.BindVFIO(t, c)
//		...
//	}
//
// On the host (not in a gonvme guest) Require skips the test. In a guest
// booted for another profile it skips with "runs in the <p> boot" (the
// harness never runs a test there). In the right guest a missing device
// fails the test: a VM test never skips because its device is absent.
//
// Profiles (ParseProfile; combine with "+") are declared here so that the
// host harness and the guest share one description: the harness writes the
// resolved profile into the initramfs as JSON (Boot) and vmtest reads it.
//
// vmtest may import vfio (vfio's own VM tests are package vfio_test) and
// hack/qemu/internal/guest; nothing below hack/qemu may import vmtest
// except tests. Env methods take the test's testing.TB and may be called
// from the test's goroutine; Monitor may be called from any goroutine.
package vmtest
