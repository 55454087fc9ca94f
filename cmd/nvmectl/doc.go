// Command nvmectl manages NVMe controllers for gonvme's userspace driver.
//
// Usage:
//
//	nvmectl [-o normal|json] list
//
// list prints every NVMe controller (PCI class 0x010802) with its PCI
// address, vendor:device IDs, bound driver, IOMMU group, and whether the
// group is viable for VFIO once the controller is bound to vfio-pci (every
// other device in the group on vfio-pci, on no driver, or a PCI bridge).
// When it is not, the group's other members are listed with their drivers.
//
// # JSON output
//
// With -o json, list prints one object. The keys are stable; new keys may
// be added, none will be renamed or removed:
//
//	{
//	  "controllers": [              // sorted by address; [] when none
//	    {
//	      "address": "0000:00:04.0", // PCI domain:bus:device.function
//	      "vendor_id": "1b36",       // 4 lowercase hex digits
//	      "device_id": "0010",       // 4 lowercase hex digits
//	      "driver": "nvme",          // bound driver, "" for none
//	      "iommu_group": 3,          // null without an IOMMU
//	      "viable": true,            // usable through VFIO once bound to vfio-pci
//	      "group_members": [         // the other devices in the group; [] when alone
//	        {"address": "0000:00:1e.0", "driver": "", "bridge": true, "blocks": false}
//	      ]
//	    }
//	  ]
//	}
//
// "blocks" is true for a member that keeps the group from being viable.
//
// # Exit status
//
//	0  success
//	1  usage error (unknown command or flag, bad -o value)
//	2  device or driver error (sysfs unreadable, bind failed, ...)
//
// The command logic lives in functions that write to an io.Writer, so tests
// run it in-process. nvmectl is built on github.com/spf13/cobra: the CLI
// framework is not the driver, so a well-kept library does that part.
//
// Imports: the standard library, cobra, and gonvme's vfio package.
package main
