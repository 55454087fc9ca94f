package dma

// The one file in dma that makes system calls: mmap/mlock/munmap of DMA
// memory and the /proc and /sys reads that explain a failure.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/internal/dmamem"
)

// HugePageSize is the size of the hugepages the Allocator uses (x86-64 and
// arm64 with 4 KiB base pages: 2 MiB, mapped with MAP_HUGE_2MB).
const HugePageSize = dmamem.HugePageSize

// hugeSysfs is the directory with the counters of 2 MiB hugepages
// (Documentation/admin-guide/mm/hugetlbpage.rst).
const hugeSysfs = "/sys/kernel/mm/hugepages/hugepages-2048kB"

// mapMemory maps size bytes (a multiple of the page size) of anonymous,
// populated memory aligned to align, in 2 MiB hugepages if huge, and locks
// it if lock (a Mapper that pins the pages itself, as VFIO does, gets
// unlocked memory: VFIO charges its pins to RLIMIT_MEMLOCK, and locked
// pages would count a second time). The pages neither move nor swap until
// unmapMemory (hugepages never swap; VFIO's pin holds the others once
// mapped). See internal/dmamem.
func mapMemory(size, align int, huge, lock bool) (*dmamem.Memory, error) {
	m, err := dmamem.Map(size, align, huge, lock)
	if err == nil {
		return m, nil
	}
	var de *dmamem.Error
	if !errors.As(err, &de) {
		return nil, err
	}
	switch {
	case de.Op == "mmap" && (errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EPERM)):
		// mm/mmap.c do_mmap: MAP_LOCKED beyond RLIMIT_MEMLOCK is EAGAIN,
		// a zero limit without CAP_IPC_LOCK is EPERM.
		return nil, memlockError("mmap", size, de.Err)
	case de.Op == "mmap" && huge && errors.Is(err, unix.ENOMEM):
		// A private hugetlb mapping reserves its pages at mmap time: too
		// few free ones is ENOMEM here, never a fault later.
		return nil, hugeError(size, de.Err)
	case de.Op == "mlock" && (errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.EPERM)):
		return nil, memlockError("mlock", size, de.Err)
	}
	return nil, err
}

// unmapMemory releases memory from mapMemory.
func unmapMemory(m *dmamem.Memory) error {
	if err := m.Unmap(); err != nil {
		return err
	}
	return nil
}

// memlockError explains a failure to lock size bytes with the numbers that
// matter: the limit, what the process has locked, and what it needed.
func memlockError(op string, size int, cause error) error {
	var lim unix.Rlimit
	limit := "unknown"
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) == nil {
		limit = fmtLimit(lim.Cur) + " (hard " + fmtLimit(lim.Max) + ")"
	}
	locked := "unknown"
	if kb, ok := procStatusKB("VmLck"); ok {
		locked = strconv.FormatUint(kb*1024, 10) + " bytes"
	}
	return fmt.Errorf("%s: lock %d bytes: RLIMIT_MEMLOCK is %s, %s already locked, %d more needed "+
		"(mlock and VFIO's DMA pins both count against it): raise it with `ulimit -l` (KiB), LimitMEMLOCK= in the systemd unit, or grant CAP_IPC_LOCK (%w): %w",
		op, size, limit, locked, size, cause, ErrMemlock)
}

// fmtLimit formats an rlimit value.
func fmtLimit(v uint64) string {
	if v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10) + " bytes"
}

// procStatusKB reads a "Name:  N kB" line of /proc/self/status.
func procStatusKB(name string) (uint64, bool) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// hugeInfo is a snapshot of the 2 MiB hugepage counters.
type hugeInfo struct {
	nr, free, resv, overcommit, surplus uint64
	ok                                  bool // the counters could be read
}

// readHugeInfo reads the 2 MiB hugepage counters from sysfs.
func readHugeInfo() hugeInfo {
	var h hugeInfo
	read := func(name string, dst *uint64) bool {
		b, err := os.ReadFile(hugeSysfs + "/" + name)
		if err != nil {
			return false
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		*dst = n
		return err == nil
	}
	h.ok = read("nr_hugepages", &h.nr) && read("free_hugepages", &h.free) &&
		read("resv_hugepages", &h.resv)
	// Overcommit counters are optional extras.
	_ = read("nr_overcommit_hugepages", &h.overcommit)
	_ = read("surplus_hugepages", &h.surplus)
	return h
}

// available returns how many hugepages a new mapping can still get: the free
// ones not reserved by other mappings, plus the surplus the kernel may still
// allocate under nr_overcommit_hugepages.
func (h hugeInfo) available() uint64 {
	n := uint64(0)
	if h.free > h.resv {
		n = h.free - h.resv
	}
	if h.overcommit > h.surplus {
		n += h.overcommit - h.surplus
	}
	return n
}

// hugeError explains a hugepage shortage for a mapping of size bytes.
func hugeError(size int, cause error) error {
	h := readHugeInfo()
	need := uint64(size) / HugePageSize
	msg := fmt.Sprintf("need %d hugepages of 2 MiB", need)
	if h.ok {
		msg += fmt.Sprintf(", nr_hugepages=%d free=%d reserved=%d", h.nr, h.free, h.resv)
		if h.overcommit > 0 {
			msg += fmt.Sprintf(" overcommit=%d surplus=%d", h.overcommit, h.surplus)
		}
		msg += fmt.Sprintf(": reserve more with `echo %d > /proc/sys/vm/nr_hugepages` (or hugepages=N on the kernel command line)", h.nr+need)
	} else {
		msg += fmt.Sprintf(": %s is unreadable; is hugetlbfs support (CONFIG_HUGETLBFS) in the kernel?", hugeSysfs)
	}
	if cause != nil {
		return fmt.Errorf("%s (%w): %w", msg, cause, ErrHugePages)
	}
	return fmt.Errorf("%s: %w", msg, ErrHugePages)
}

// osPageSize is the base page size of the machine.
var osPageSize = dmamem.PageSize

// isNoSpace reports ENOSPC, what VFIO_IOMMU_MAP_DMA returns when the
// container's dma_entry_limit is used up (drivers/vfio/vfio_iommu_type1.c).
func isNoSpace(err error) bool { return errors.Is(err, unix.ENOSPC) }
