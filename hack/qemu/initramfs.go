package main

import (
	"bufio"
	"fmt"
	"os"

	"github.com/u-root/u-root/pkg/cpio"
)

// ramFile is one file of the initramfs: from a host file (Src) or Data.
type ramFile struct {
	Name string // path in the archive, no leading slash
	Src  string
	Data []byte
	Perm uint64
}

// writeInitramfs writes an uncompressed newc archive: the directories the
// init needs, /dev/console (the kernel opens it for init's stdio), and the
// files with their parent directories.
//
// A boot whose profile needs fabrics modules or tools gets them here
// (profileCarry).
func writeInitramfs(out string, files []ramFile) (err error) {
	files, err = profileCarry(files, defaultCarryNeeds())
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("initramfs: %w", cerr)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := cpio.NewDedupWriter(cpio.Newc.Writer(bw))
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o555),
		cpio.Directory("sys", 0o555),
		cpio.Directory("run", 0o755),
		cpio.Directory("tmp", 0o1777),
		cpio.Directory("root", 0o700),
	}
	var opened []*os.File
	defer func() {
		for _, o := range opened {
			o.Close()
		}
	}()
	for _, rf := range files {
		if rf.Src == "" {
			recs = append(recs, cpio.StaticRecord(rf.Data, cpio.Info{Name: rf.Name, Mode: cpio.S_IFREG | rf.Perm}))
			continue
		}
		src, err := os.Open(rf.Src)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		opened = append(opened, src)
		st, err := src.Stat()
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		recs = append(recs, cpio.Record{ReaderAt: src, Info: cpio.Info{
			Name: rf.Name, Mode: cpio.S_IFREG | rf.Perm, FileSize: uint64(st.Size()),
		}})
	}
	cpio.MakeAllReproducible(recs)
	for i := range recs {
		recs[i].Ino = uint64(i + 1)
		recs[i].NLink = 1
	}
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}
