package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

func bootFile(t *testing.T, profile string) ramFile {
	t.Helper()
	js, err := json.Marshal(&vmtest.Boot{Profile: profile, NVMeModules: []string{"nvme-core.ko", "nvme.ko"}})
	if err != nil {
		t.Fatal(err)
	}
	return ramFile{Name: "gonvme/boot.json", Data: js, Perm: 0o644}
}

func fakeNeeds() carryNeeds {
	cs := newCarrySet()
	cs.ldd = func(bin string) ([]byte, error) {
		return []byte("\tlinux-vdso.so.1 (0x1)\n\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x2)\n\t/lib64/ld-linux-x86-64.so.2 (0x3)\n"), nil
	}
	return carryNeeds{
		assets: func() (*Assets, error) {
			return &Assets{ModuleDir: "/cache/modules", NVMeModules: []string{"nvme-core.ko", "nvme.ko"},
				FabricsModules: []string{"configfs.ko", "nvme-core.ko", "nvme-tcp.ko"}}, nil
		},
		look:  func(name string) (string, error) { return "/usr/sbin/" + name, nil },
		carry: cs,
	}
}

func TestProfileCarryUnchanged(t *testing.T) {
	for _, files := range [][]ramFile{
		{{Name: "init", Src: "/x/init"}},                    // no boot description (selftest fixtures)
		{{Name: "init", Src: "/x/init"}, bootFile(t, "4k")}, // a profile that needs nothing more
	} {
		n := fakeNeeds()
		n.assets = func() (*Assets, error) { t.Fatal("assets read for a profile without fabrics"); return nil, nil }
		out, err := profileCarry(files, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != len(files) || string(out[len(out)-1].Data) != string(files[len(files)-1].Data) {
			t.Errorf("files changed: %+v", out)
		}
	}
}

func TestProfileCarryNVMf(t *testing.T) {
	files := []ramFile{
		{Name: "init", Src: "/x/init"},
		bootFile(t, "nvmf+4k"),
		{Name: "gonvme/modules/nvme-core.ko", Src: "/cache/modules/nvme-core.ko"},
	}
	out, err := profileCarry(files, fakeNeeds())
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, f := range out {
		count[f.Name]++
	}
	for _, want := range []string{"gonvme/modules/configfs.ko", "gonvme/modules/nvme-tcp.ko", "gonvme/modules/nvme-core.ko",
		"gonvme/bin/nvme", "gonvme/bin/mkfs.ext4", "gonvme/bin/e2fsck", "gonvme/bin/fio",
		"lib/x86_64-linux-gnu/libz.so.1", "lib64/ld-linux-x86-64.so.2"} {
		if count[want] != 1 {
			t.Errorf("%s in the initramfs %d times, want once", want, count[want])
		}
	}
	for _, f := range out {
		if f.Name == "gonvme/bin/mkfs.ext4" && f.Src != "/usr/sbin/mkfs.ext4" {
			t.Errorf("mkfs.ext4 from %s", f.Src)
		}
	}
	var bt vmtest.Boot
	if err := json.Unmarshal(out[1].Data, &bt); err != nil {
		t.Fatal(err)
	}
	if strings.Join(bt.FabricsModules, " ") != "configfs.ko nvme-core.ko nvme-tcp.ko" || bt.Profile != "nvmf+4k" || len(bt.NVMeModules) != 2 {
		t.Errorf("boot description %+v", bt)
	}
}

func TestProfileCarryMissing(t *testing.T) {
	n := fakeNeeds()
	n.assets = func() (*Assets, error) { return &Assets{ModuleDir: "/cache/modules"}, nil }
	if _, err := profileCarry([]ramFile{bootFile(t, "nvmf")}, n); err == nil || !strings.Contains(err.Error(), "run `go run ./hack/qemu setup`") {
		t.Errorf("cache without fabrics modules: %v", err)
	}
	n = fakeNeeds()
	n.look = func(name string) (string, error) { return lookToolIn(name, nil) }
	if _, err := profileCarry([]ramFile{bootFile(t, "nvmf")}, n); err == nil || !strings.Contains(err.Error(), "not found on the host") {
		t.Errorf("missing tool: %v", err)
	}
}
