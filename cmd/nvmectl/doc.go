// Command nvmectl manages NVMe controllers for gonvme's userspace driver,
// with the verbs storage engineers know from SPDK's setup.sh and nvme-cli.
//
// Controllers are named by PCI address (0000:01:00.0), or, reached over
// NVMe/TCP, as tcp://HOST[:PORT]/NQN (see NVMe/TCP below); namespaces with
// -n/--namespace-id. Every verb that prints data takes -o normal|json
// (default normal) and -H/--human-readable (decodes fields in normal
// output; JSON is the same with or without it).
//
// # Setup (setup.sh)
//
//	nvmectl list [--identify]
//	nvmectl setup [ADDR...] [--hugemem MiB] [--hugenode N,...] [--allow A,B] [--deny A,B] [--force]
//	nvmectl reset [ADDR...] [--allow A,B] [--deny A,B] [--driver nvme]
//	nvmectl status
//
// Addresses are written as lspci prints them: 0000:01:00.0 (lspci -D),
// 10000:e1:00.0 (a 5-digit domain, as VMD makes), or 01:00.0 (domain 0).
//
// list and status never enable, disable or reset a controller. They show
// what PCI config space, sysfs (through prometheus/procfs: NUMA node, PCIe
// link speed and width) and the kernel driver offer: list prints every
// NVMe controller (PCI class 0x010802) with its address, vendor:device,
// driver, NUMA node, link, IOMMU group and whether the group is viable for
// VFIO, its state, then serial, firmware, namespaces ("nsid:size/block
// size") and model. The state of a controller on vfio-pci (or on no
// driver) comes from CC and CSTS, read through BAR0 mapped read-only from
// sysfs (resource0): enabled, disabled, shut down, fatal (CSTS.CFS), ...
// One on the kernel's nvme driver is described from sysfs
// (/sys/bus/pci/devices/ADDR/nvme/nvmeX, /sys/block). Identity and
// namespaces of a controller on vfio-pci need Identify, so a bring-up:
// list --identify opens each idle one (and says on standard error that it
// resets it). Notes below the table say which controller is in use and
// which IOMMU group holds devices on other drivers.
//
// setup and reset read SPDK setup.sh's environment with its meanings, and
// a flag given on the command line wins over its variable: PCI_ALLOWED
// (--allow; whitespace- or comma-separated addresses, "none" for none),
// PCI_BLOCKED (--deny; wins over the allowed list), HUGEMEM (--hugemem,
// MiB) and HUGENODE (--hugenode: "0,1" reserves HUGEMEM on each node,
// "nodes_hp[1]=512" sets node 1's page count; node 0 by default, as
// setup.sh; machine-wide where sysfs has no NUMA nodes; a node that
// already has as many pages keeps them). Both say which controllers they
// left out and why ("skipped: denied by PCI_BLOCKED"; action "skipped" in
// JSON).
//
// setup binds the named controllers (all without arguments; --allow keeps
// only those, --deny drops those, like PCI_ALLOWED and PCI_BLOCKED) to
// vfio-pci. With --hugemem it first writes nr_hugepages of 2 MiB pages
// (0, the default, keeps the reservation). It stops with a fix when the
// kernel has no IOMMU groups or vfio-pci is not loaded, and warns when
// RLIMIT_MEMLOCK is below 64 MiB. It refuses a controller on nvme whose
// namespaces or partitions are in use or hold data — a mounted file system
// (by major:minor in /proc/self/mountinfo), active swap (/proc/swaps), a
// holder in /sys/block/*/holders (LVM, MD, device mapper), an exclusive
// open by anyone, a lock, or a signature (partition table, file system,
// LVM, RAID, ZFS, BlueStore): vfio.Bind's own check (vfio.InUse) — and
// does nothing to it, unless --force (vfio.Force). reset gives controllers on vfio-pci back
// to nvme (--driver) and leaves the others alone. status prints the
// hugepage reservation, the IOMMU, vfio-pci, the memlock limit and each
// controller's driver, block devices and what uses them.
//
// # Admin commands (nvme-cli)
//
//	nvmectl id-ctrl ADDR                  Identify Controller
//	nvmectl id-ns ADDR [-n NSID]          Identify Namespace (default 1)
//	nvmectl list-ns ADDR                  active namespace IDs
//	nvmectl ns-descs ADDR [-n NSID]       Namespace Identification Descriptors
//	nvmectl smart-log ADDR [-n NSID]      SMART / Health Information (default the controller)
//	nvmectl error-log ADDR [-e N]         Error Information (default ELPE+1 entries)
//	nvmectl fw-log ADDR                   Firmware Slot Information
//	nvmectl effects-log ADDR              Commands Supported and Effects
//	nvmectl get-feature ADDR [-f FID] [-s SEL] [-c CDW11] [-n NSID] [-l LEN]
//	nvmectl set-feature ADDR -f FID -v VALUE [-s] [-n NSID]
//	nvmectl show-regs ADDR [--after-init] controller registers, as found
//	nvmectl format ADDR -n NSID [-l LBAF] [-s 0|1|2] --force
//	nvmectl get-log ADDR -i LID -l LEN [-n NSID] [-L OFFSET] [-s LSP] [-r] [-b]
//	nvmectl create-ns ADDR -s NSZE -c NCAP [-f FLBAS | -b BLOCKSIZE] [-d DPS] [-m NMIC]
//	nvmectl delete-ns ADDR -n NSID
//	nvmectl attach-ns ADDR -n NSID [-c CNTLID,...]   (default: this controller)
//	nvmectl detach-ns ADDR -n NSID [-c CNTLID,...]
//	nvmectl admin-passthru ADDR -O OPCODE [-n NSID] [--cdw2..--cdw15 V] [-l LEN -r|-w [-i FILE]] [-b] [-s] [--dangerous]
//	nvmectl fw-download ADDR -f FILE [-x XFER] [--offset OFF]
//	nvmectl fw-commit ADDR -a ACTION [-s SLOT] [-b]
//	nvmectl device-self-test ADDR -s 1|2|0xe|0xf [-n NSID]
//	nvmectl self-test-log ADDR [-e N]
//	nvmectl sanitize ADDR -a 1|2|3|4 [-u] [-n PASSES] [-i] [-d] [-p PATTERN] --force
//	nvmectl sanitize-log ADDR
//
// The management verbs take nvme-cli's names and flags (nvme-cli's -o
// shorthands are long flags here: -o is the output format). A command the
// controller rejects as an invalid opcode says whether OACS advertised it:
// QEMU 7.2 sets OACS bit 3 but implements only Namespace Attachment, so
// create-ns and delete-ns fail there with Invalid Command Opcode, while
// attach-ns and detach-ns work on a namespace defined detached in an
// nvme-subsys (the ns-mgmt VM profile). Attachment and deletion rescan the
// namespaces. admin-passthru refuses the driver's own commands (queue
// creation and deletion, Asynchronous Event Request, Doorbell Buffer
// Config, Set Features Number of Queues) and any FUSE or PSDT bits, and
// sends the commands that change the controller under the driver (Format
// NVM, Sanitize, Namespace Management and Attachment, Firmware Commit,
// Abort, Virtualization Management, Security Send) only with --dangerous;
// io-passthru sends reservation commands only with --dangerous. Data moves
// through the controller's DMA memory: at most a page for admin commands,
// the largest transfer for I/O. sanitize, like format, never prompts:
// without --force it refuses. fw-commit reports a status asking for a
// reset as success and says which reset activates the image.
//
// Numbers take decimal or 0x hex. Every run brings the controller up,
// which is a controller reset: a device that follows the spec then reverts
// features set without --save to their saved or default values, so
// set-feature without -s/--save may not outlive the nvmectl run (QEMU keeps
// them); set-feature says so on standard error. format erases the
// namespace and never prompts: without --force it refuses (exit 1).
//
// show-regs reads the registers as it finds them, before any bring-up:
// BAR0 is mapped read-only through sysfs and only loaded from, so a state
// a crashed program left is still there to see (CSTS.CFS, a shutdown, its
// admin queue registers). Note that the kernel's vfio-pci resets the
// function (FLR, where the device has it) when the last process using it
// through VFIO exits, so on such a device CC and CSTS read 0 after any
// gonvme program, killed or not; registers a reset keeps (QEMU keeps AQA,
// ASQ and ACQ) still show that program's admin queue. --after-init brings
// the controller up first and shows the registers as nvmectl set them (the
// old behaviour).
//
// JSON keys follow nvme-cli's (nvme-print-json.c) where it prints the
// same data:
//
//	id-ctrl      "vid" "ssvid" "sn" "mn" "fr" "rab" "ieee" "cmic" "mdts" "cntlid" "ver"
//	             "rtd3r" "rtd3e" "oaes" "ctratt" "rrls" "cntrltype" "fguid" "crdt1".."crdt3"
//	             "nvmsr" "vwci" "mec" "oacs" "acl" "aerl" "frmw" "lpa" "elpe" "npss" "avscc"
//	             "apsta" "wctemp" "cctemp" "mtfa" "hmpre" "hmmin" "tnvmcap" "unvmcap" "rpmbs"
//	             "edstt" "dsto" "fwug" "kas" "hctma" "mntmt" "mxtmt" "sanicap" "hmminds"
//	             "hmmaxd" "nsetidmax" "endgidmax" "anatt" "anacap" "anagrpmax" "nanagrpid"
//	             "pels" "domainid" "megcap" "sqes" "cqes" "maxcmd" "nn" "oncs" "fuses" "fna"
//	             "vwc" "awun" "awupf" "icsvscc" "nwpc" "acwu" "ocfs" "sgls" "mnan" "maxdna"
//	             "maxcna" "subnqn" "ioccsz" "iorcsz" "icdoff" "fcatt" "msdbd" "ofcs"
//	             "psds": [{"max_power" "max_power_scale" "non-operational_state" "entry_lat"
//	             "exit_lat" "read_tput" "read_lat" "write_tput" "write_lat" "idle_power"
//	             "idle_scale" "active_power" "active_power_work" "active_scale"}]
//	id-ns        "nsze" "ncap" "nuse" "nsfeat" "nlbaf" "flbas" "mc" "dpc" "dps" "nmic"
//	             "rescap" "fpi" "dlfeat" "nawun" "nawupf" "nacwu" "nabsn" "nabo" "nabspf"
//	             "noiob" "nvmcap" ("npwg" "npwa" "npdg" "npda" "nows") "mssrl" "mcl" "msrc"
//	             "anagrpid" "nsattr" "nvmsetid" "endgid" "nguid" "eui64"
//	             "lbafs": [{"lbaf" "ms" "ds" "rp" "in_use"}]
//	list-ns      {"nsid_list": [{"nsid": 1}, ...]}
//	ns-descs     "eui64" "nguid" "uuid" "csi" (those the device reports)
//	smart-log    "critical_warning" "temperature" (kelvin) "avail_spare" "spare_thresh"
//	             "percent_used" "endurance_grp_critical_warning_summary" "data_units_read"
//	             "data_units_written" "host_read_commands" "host_write_commands"
//	             "controller_busy_time" "power_cycles" "power_on_hours" "unsafe_shutdowns"
//	             "media_errors" "num_err_log_entries" "warning_temp_time" "critical_comp_time"
//	             "temperature_sensor_N" (non-zero sensors) "thm_temp1_trans_count"
//	             "thm_temp2_trans_count" "thm_temp1_total_time" "thm_temp2_total_time"
//	error-log    {"errors": [{"error_count" "sqid" "cmdid" "status_field" "status_name"
//	             "parm_error_location" "lba" "nsid" "vs" "trtype" "cs" "trtype_spec_info"
//	             "log_page_version"}]}
//	fw-log       {"ADDR": {"Active Firmware Slot (afi)": N, "Firmware Rev Slot N": "U64 (REV)"}}
//	effects-log  {"admin_cmd_set": {"ACS_6 (Identify)": EFFECTS, ...}, "io_cmd_set": {"IOCS_2 (Read)": ...}}
//	show-regs    "cap" "vs" "intms" "intmc" "cc" "csts" "nssr" "aqa" "asq" "acq" "cmbloc"
//	             "cmbsz" "bpinfo" "bprsel" "bpmbl" "cmbmsc" "cmbsts" "pmrcap" "pmrctl"
//	             "pmrsts" "pmrebs" "pmrswtp" "pmrmscl" "pmrmscu" (as numbers)
//
//	self-test-log {"Current Device Self-Test Operation" "Current Device Self-Test Completion"
//	             "List of Valid Reports": [{"Self test result" "Self test code" "Segment number"
//	             "Valid Diagnostic Information" "Power on hours (POH)" ("Namespace Identifier
//	             (NSID)" "Failing LBA" "Status Code Type" "Status Code", when valid) "Vendor
//	             Specific"}]}
//	sanitize-log {"ADDR": {"sprog" "sstat": {"global_erased" "no_cmplted_passes" "status"}
//	             "cdw10_info" "time_over_write" "time_block_erase" "time_crypto_erase"
//	             "time_over_write_no_dealloc" "time_block_erase_no_dealloc"
//	             "time_crypto_erase_no_dealloc"}}
//
// 128-bit counters are JSON numbers, as nvme-cli prints them. nvmectl's own
// keys (nvme-cli has no equivalent):
//
//	get-feature  "feature_id" "feature_name" "sel" "value" ("saveable" "per_namespace"
//	             "changeable" with -s 3; "data" in hex for features with a data structure);
//	             without -f {"features": [the same, for each feature the controller answers]}
//	set-feature  "feature_id" "feature_name" "value" "save" "result"
//	format       "nsid" "lbaf" "ses" "block_size" "metadata_size" "nsze" "usable"
//	get-log      "log_id" "log_name" "namespace_id" "offset" "length" "data" (hex)
//	create-ns    "nsid"; delete-ns "nsid"; attach-ns, detach-ns "nsid" "controllers"
//	*-passthru   "opcode" "result" (completion dword 0) ("data" in hex, for reads)
//	fw-download  "bytes" "offset"; fw-commit "slot" "action" "result" "reset_needed"
//	device-self-test "self_test_code" "namespace_id"; sanitize "sanact"
//	list         {"controllers": [{"address" "vendor_id" "device_id" "driver" "numa_node"
//	             (null when unknown) "pcie_link": {"speed_gts" "width" "max_speed_gts"
//	             "max_width"} (null when unknown) "registers": {"vs" "cc" "csts" "state"}
//	             (null unless read) "identified" "iommu_group" (null without an IOMMU)
//	             "viable" "group_members": [{"address" "driver" "bridge" "blocks"}] "model"
//	             "serial" "firmware" "namespaces": [{"nsid" "blocks" "block_size" "bytes"
//	             "device"}] "note"}]}
//	setup, reset {"controllers": [{"address" "previous_driver" "driver" "action" "reasons"}]}
//	             (setup adds "hugepages"); action is bound, already-bound, refused,
//	             failed, released, left-alone or skipped
//	status       {"hugepages": [{"size_kb" "total" "free"}] "iommu": {"enabled" "groups"}
//	             "vfio_pci" "memlock": {"soft" "hard" "unlimited"} "controllers": [{"address"
//	             "vendor_id" "device_id" "driver" "numa_node" "pcie_link" "registers"
//	             "iommu_group" "block_devices" "in_use"}]}
//
// Keys are stable: new ones may be added, none renamed or removed.
//
// # I/O commands (nvme-cli)
//
//	nvmectl read ADDR [-n NSID] -s LBA [-c N | -z BYTES] [-d FILE]    default: stdout
//	nvmectl write ADDR [-n NSID] -s LBA [-c N | -z BYTES] [-d FILE]   default: stdin
//	nvmectl compare ADDR [-n NSID] -s LBA [-c N | -z BYTES] [-d FILE]
//	nvmectl write-zeroes ADDR [-n NSID] -s LBA [-c N]
//	nvmectl verify ADDR [-n NSID] -s LBA [-c N]
//	nvmectl dsm ADDR [-n NSID] --ad -s L1,L2 -b N1,N2     (--deallocate --slbs --blocks)
//	nvmectl flush ADDR [-n NSID]
//
// -c/--block-count is 0's based like nvme-cli's (-c 0 is one block);
// -z/--data-size is in bytes and must be a multiple of the block size;
// neither means one block. --blocks of dsm are counts (1-based), one per
// --slbs entry. Transfers larger than the controller's maximum (MDTS) are
// split. Everything is checked before the first command is sent: the
// namespace, the size, the range against the namespace's size, and for
// write and compare the input. Data moves in pieces of the largest
// transfer through one DMA buffer of that size, so a transfer of any
// length needs no more memory than one piece. A regular file shorter than
// asked writes nothing (exit 1); standard input that ends early stops the
// command there and says which blocks were written (exit 2). "<verb>: Success ..." goes to standard error (standard
// output carries read's data). A compare mismatch exits 2 with the status
// name, Compare Failure.
//
// # Performance (SPDK's perf)
//
//	nvmectl perf ADDR... [-q QD] [-s SIZE] [-w WORKLOAD] [-M PCT] [-t SEC] [-a SEC]
//	                     [-c MASK | -P N] [-n NSID] [--verify] [--seed N] [-L|-LL]
//	                     [--metrics-addr 127.0.0.1:9112] [--no-shadow-doorbells]
//	                     [--mode poll|interrupt|hybrid] [--rate IOPS]
//
// SPDK perf's -q -o -w -M -t -a -c -P -L are -q/--queue-depth,
// -s/--io-size (K/M suffixes, binary), -w/--workload, -M/--rwmixread,
// -t/--time, -a/--warmup, -c/--cores, -P/--qpairs-per-ns and -L/--latency.
// -c is SPDK's core mask with SPDK's meaning: hexadecimal ("0x3" and "3"
// are cores 0 and 1, "2" is core 1 alone, "f" cores 0-3) or a list in
// brackets ("[0-3]"); one poller runs on each core. -o is nvmectl's output
// format: -o with a number is refused with a pointer to -s. A poller owns
// one queue pair per controller, so -P N queue pairs are N pollers;
// without -c they are placed on the CPUs of the first controller's NUMA
// node (sysfs numa_node and node cpulist), then on other allowed CPUs if
// the node has too few, and the table's header says where. Each poller
// drives every active namespace (or -n) with QD requests. A live line a
// second goes to standard error; the table (per namespace and total:
// IOPS, MiB/s, latency avg, min, p50, p90, p99, p99.9, p99.99, max in µs)
// to standard output, under a header that names the seed and whether the
// doorbells were shadow doorbells (Doorbell Buffer Config, used when the
// controller offers it, as QEMU's does; --no-shadow-doorbells writes
// every doorbell to its register) or MMIO doorbells, and the poller
// mode (--mode: poll spins, interrupt sleeps on the queues' MSI-X
// eventfds whenever idle, hybrid sleeps after 50 µs without work; --rate
// N paces the I/O open-loop at N per second in total). --seed replays
// a run's random offsets (and --verify's pattern). Ctrl-C, SIGTERM and
// SIGHUP end the measurement early and print what was measured.
// --verify writes a tagged pattern for --time seconds, then runs the
// workload within it and checks every read. --metrics-addr HOST:PORT
// (default off) serves /metrics and /healthz, as serve does, for the
// length of the run, so Prometheus or curl can watch the pollers'
// counters while perf drives them (for example perf ADDR -t 60
// --metrics-addr 127.0.0.1:9112, then curl 127.0.0.1:9112/metrics); a
// port that cannot be listened on exits 1. Failed I/O or a mismatch
// exits 2 after the results. JSON (defined once, in internal/perfjson,
// which nvmectl's tests and hack/qemu's bench decode strictly through;
// "schema_version" changes with any key):
//
//	perf         "schema_version" (3) "workload" "io_size" "queue_depth" "rwmixread" "pollers"
//	             "cpus" "seconds" "warmup_seconds" "seed" "mode" "rate_iops" "run": {"nvmectl_version" "go_version"
//	             "start_time" "kernel" "cpu_model" "dma_memory" "hugepage_fallback"
//	             ("hugepage_fallback_reason") "controllers": [{"address" "model" "serial"
//	             "firmware" "shadow_doorbells"}]} "results": [{"controller" "nsid" "workload" "io_size"
//	             "queue_depth" "pollers" "ios" "reads" "writes" "errors" "seconds" "iops"
//	             "mibps" "latency_us" "read_latency_us" "write_latency_us": {"avg" "min" "max"
//	             "p50" "p90" "p99" "p99_9" "p99_99"} "histogram": [{"low_us" "high_us"
//	             "count"}]}] "total": {the same keys; "controller": "total"}
//	             "verify": {"enabled" "seed" "blocks" "checked" "mismatches" ("first_mismatch")}
//	             "samples": [{"second" "ios" "iops" "mibps"}] (one per second measured)
//
// For rw and randrw the table adds a row each for the reads and the
// writes under every row. -L prints, after the table, SPDK perf's latency
// summary (the 1st to the 99.99999th percentile) for each namespace, and
// for its reads and writes apart in a mixed workload; -LL adds the
// histogram (each bucket's range in µs, the cumulative percentage and the
// count).
//
// # NVMe/TCP host (nvme-cli's discover and connect)
//
//	nvmectl discover tcp://HOST[:PORT]    the Discovery Log Page, as nvme discover prints it
//	nvmectl VERB tcp://HOST[:PORT]/NQN    any verb below that takes ADDR, over NVMe/TCP
//
// A controller named tcp://HOST[:PORT]/NQN (HOST an IPv4 address, a name,
// or an IPv6 address in brackets: tcp://[fe80::1%eth0]/NQN; PORT 4420
// unless given) is reached with package nvme/tcp instead of VFIO, wherever
// a PCI address is taken: id-ctrl, id-ns, list-ns, the log and feature
// verbs, read, write, compare, flush, perf, serve and the rest (show-regs
// with --after-init: the registers are properties). setup and reset take
// PCI addresses only. Each verb connects (ICReq, Fabrics Connect of the
// admin queue and its I/O queues), runs, and disconnects. discover
// connects to the discovery controller (port 8009 unless given), reads the
// whole log (70h) and prints each entry's trtype, adrfam, subtype, treq,
// portid, trsvcid, subnqn, traddr, eflags and sectype as nvme-cli 2.3 does
// (padding stripped); -o json:
//
//	discover     "genctr" "records": [{"trtype" "adrfam" "subtype" "treq" "portid" "trsvcid"
//	             "subnqn" "traddr" "eflags" "sectype"}]
//
// Every verb that takes a controller takes nvme-cli connect's options by
// their long names (the one-letter forms clash with nvmectl's): --hostnqn
// and --hostid (default: /etc/nvme/hostnqn and /etc/nvme/hostid, as
// nvme-cli; else a host NQN made from a random host ID), --nr-io-queues
// (default what the verb uses: 1, or one per perf poller; perf refuses
// fewer than its pollers), --queue-size (16 to 1024, default 128),
// --keep-alive-tmo (seconds, default 5; Keep Alive every half of it),
// --reconnect-delay (seconds, default 10), --ctrl-loss-tmo (seconds,
// default 600; -1 reconnects forever, 0 gives up when the attempt made at
// once fails; after it outstanding and new I/O fails with
// nvme.ErrRemoved), --hdr-digest and --data-digest (CRC32C). A bad value is a usage error before anything
// connects, and so is any of them without a tcp:// controller.
//
// # Metrics (Prometheus)
//
//	nvmectl serve ADDR... [--listen 127.0.0.1:9111] [--pollers N]
//	                      [--mode poll|interrupt|hybrid] [--idle adaptive|busy]
//
// serve opens the controllers (bound to vfio-pci), runs N pollers on them
// (default 1, on the first CPUs the process may use; 0: one per CPU; idle
// adaptive, so a poller with nothing to do parks and costs no CPU) and
// serves /metrics (package metrics: queue, poller and controller counters,
// commands and bytes by operation, errors by status, latency histograms,
// state, SMART temperature and spare read at most every 10 s) and /healthz
// (200 when every controller is ready, else 503 naming the one that is
// not) until Ctrl-C or SIGTERM. It listens on loopback unless --listen
// says otherwise; the controller label is the PCI address (or tcp:// name). A program that
// embeds gonvme exports the same with metrics.Register and metrics.Serve.
//
// # Tracing (eBPF)
//
//	nvmectl trace (--pid PID | --binary PATH | --kernel) [--interval 1s] [--duration D]
//
// trace attaches eBPF uprobes to the entry of the trace hooks
// nvme.TraceSubmit and nvme.TraceComplete of a running gonvme program
// (--pid, or every process of --binary), or to the kernel nvme driver's
// tracepoints nvme:nvme_setup_cmd and nvme:nvme_complete_rq (--kernel),
// and prints each --interval the completions per second and log2
// histograms of latency (µs) per operation (read, write, other), until
// Ctrl-C or --duration (0: no limit), then the totals. Only function
// entries are probed (a uretprobe corrupts Go's movable stacks); detaching
// leaves the traced process running. Needs root (CAP_BPF, CAP_PERFMON).
// The BPF programs are built at run time with cilium/ebpf's asm package,
// not compiled from C, so building and testing nvmectl (CI included)
// needs no clang or kernel headers.
//
// # Exit status
//
//	0  success
//	1  usage error: unknown verb or flag, malformed value or address, no
//	   controller at that address, inactive namespace, size not a block
//	   multiple, range past the end, input shorter than asked, format
//	   without --force. Nothing was sent to the device.
//	2  device or driver error: the controller is not bound to vfio-pci
//	   (the message says `nvmectl setup ADDR`), is in use, VFIO or sysfs
//	   failed, the device completed a command with an error status
//	   (printed by name), or setup refused or failed to bind a controller.
//
// Every non-zero exit prints "nvmectl: <reason>" on standard error.
//
// The verbs run in-process through run(args, stdout, stderr, app), which
// tests call directly (host tests against nvme/nvmetest and fake sysfs
// trees; VM tests against QEMU's controller). nvmectl is built on
// github.com/spf13/cobra: the CLI framework is not the driver, so a
// well-kept library does that part, and so do cobra's completion command
// and cobra/doc's man pages.
//
// # Version, completion, man pages
//
//	nvmectl --version                     module version and VCS revision (build info)
//	nvmectl completion bash|zsh|fish|powershell
//	nvmectl man DIR [--section 8]         one man page per verb, from the help text
//
// For example: source <(nvmectl completion bash); nvmectl man
// /usr/local/share/man/man8 && mandb.
//
// Imports: the standard library, cobra and cobra/doc,
// golang.org/x/sys/unix (RLIMIT_MEMLOCK, device numbers, uname, the read-only
// BAR mapping), golang.org/x/term (the live line), github.com/dustin/go-humanize
// (sizes), github.com/prometheus/procfs (PCI attributes, CPU model),
// github.com/prometheus/client_golang (serve, perf --metrics-addr),
// github.com/cilium/ebpf (trace), and gonvme's vfio, dma, nvme,
// nvme/pcie, nvme/tcp, nvme/fabrics, nvme/spec, poller, metrics, internal/mmio (register loads),
// internal/cpuset and internal/perfjson packages.
package main
