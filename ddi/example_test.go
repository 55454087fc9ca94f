package ddi_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

// stripe is the disk-striping driver of bioclone(9F), Example 1: a RAID-0
// of two devices in units of unit blocks. Logical stripe unit k lives on
// devs[k%2] at unit k/2.
type stripe struct {
	devs     [2]ddi.Edev
	unit     int64 // blocks per stripe unit
	bsize    int
	fragment atomic.Int32 // clones outstanding
	orig     *ddi.Buf     // bp_orig
	clones   []*ddi.Buf
}

// strategy is stripe_strategy: one clone per stripe unit the request
// touches, each on its own device and block, all with stripeDone as their
// iodone; then each clone goes to the device's strategy routine
// (xxstrategy). One request at a time, as in the page.
func (s *stripe) strategy(bp *ddi.Buf) int {
	s.orig = bp
	s.clones = s.clones[:0]
	for off := 0; off < bp.Bcount; {
		lblk := bp.Blkno + int64(off/s.bsize)
		unit, within := lblk/s.unit, lblk%s.unit
		size := min(int(s.unit-within)*s.bsize, bp.Bcount-off)
		dev, blkno := s.devs[unit%2], (unit/2)*s.unit+within
		c := ddi.Bioclone(bp, off, size, dev, blkno, s.done, nil, ddi.KMSleep)
		s.fragment.Add(1)
		s.clones = append(s.clones, c)
		off += size
	}
	// submit bp_1 ... bp_n to the devices
	for _, c := range s.clones {
		ddi.Strategy(c)
	}
	return 0
}

// done is stripe_done: free the clone; the last one completes bp_orig.
func (s *stripe) done(bp *ddi.Buf) int {
	ddi.Freerbuf(bp)
	if s.fragment.Add(-1) == 0 {
		ddi.Biodone(s.orig)
	}
	return 0
}

// sharedMapper maps every buffer for several fake controllers, as one VFIO
// container does for several real ones: one data buffer can then go to
// either controller.
type sharedMapper []dma.Mapper

func (m sharedMapper) Map(b []byte, iova dma.IOVA) error {
	for i, x := range m {
		if err := x.Map(b, iova); err != nil {
			for _, y := range m[:i] {
				y.Unmap(b, iova)
			}
			return err
		}
	}
	return nil
}

func (m sharedMapper) Unmap(b []byte, iova dma.IOVA) error {
	var errs []error
	for _, x := range m {
		errs = append(errs, x.Unmap(b, iova))
	}
	return errors.Join(errs...)
}

func (m sharedMapper) Ranges() []dma.Range { return m[0].Ranges() }

// The disk-striping example of bioclone(9F): a 64 KiB write split into
// 4 KiB stripe units across two controllers, each controller read directly
// to show which units it holds, and the data read back through the stripe.
func Example_striping() {
	fakes := make([]*nvmetest.Controller, 2)
	mappers := make(sharedMapper, 2)
	for i := range fakes {
		fakes[i], _ = nvmetest.New(nvmetest.Config{Serial: fmt.Sprintf("STRIPE%d", i)})
		defer fakes[i].Close()
		mappers[i] = fakes[i].Mapper()
	}
	mem, _ := dma.NewAllocator(mappers)
	defer mem.Close()

	s := &stripe{unit: 8, bsize: 512}
	nss := make([]*nvme.Namespace, 2)
	qps := make([]*nvme.QueuePair, 2)
	for i, f := range fakes {
		c, err := nvme.Open(f, mem, nil)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer c.Close()
		qps[i], _ = c.NewQueuePair(0)
		nss[i], _ = c.Namespace(1)
		// The caller's goroutine polls: Iodone runs before Strategy returns.
		s.devs[i], err = ddi.Register(nss[i], ddi.NewSyncSubmitter(qps[i]))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer ddi.Unregister(s.devs[i])
	}

	data, _ := mem.Alloc(64 << 10)
	defer mem.Free(data)
	for i := range data.Bytes {
		data.Bytes[i] = byte(i / 4096) // each stripe unit holds its number
	}
	bp := ddi.Getrbuf(ddi.KMSleep)
	bp.Bcount, bp.Addr, bp.Blkno = data.Len(), data.Bytes, 0 // B_WRITE
	s.strategy(bp)
	err := ddi.Biowait(bp)
	fmt.Printf("write: err %v, resid %d, clones %d, inbed %d\n", err, bp.Resid, bp.Children(), bp.Inbed())
	ddi.Freerbuf(bp)

	// Each controller, read directly: the units it holds, in order.
	direct, _ := mem.Alloc(32 << 10)
	defer mem.Free(direct)
	for i, ns := range nss {
		if err := ns.ReadAt(qps[i], direct.Bytes, 0); err != nil {
			fmt.Println(err)
			return
		}
		var units []byte
		for off := 0; off < direct.Len(); off += 4096 {
			units = append(units, direct.Bytes[off])
		}
		fmt.Printf("controller %d holds units %v\n", i, units)
	}

	// Read back through the stripe, from an odd block: 6 KiB at block 6.
	back, _ := mem.Alloc(64 << 10)
	defer mem.Free(back)
	bp = ddi.Getrbuf(ddi.KMSleep)
	bp.Flags |= ddi.BRead
	bp.Bcount, bp.Addr, bp.Blkno = 6<<10, back.Bytes[:6<<10], 6
	s.strategy(bp)
	err = ddi.Biowait(bp)
	fmt.Printf("read: err %v, clones %d, same bytes %v\n", err, bp.Children(), bytes.Equal(back.Bytes[:6<<10], data.Bytes[3<<10:9<<10]))
	ddi.Freerbuf(bp)
	for _, q := range qps {
		q.Close()
	}

	// Output:
	// write: err <nil>, resid 0, clones 16, inbed 16
	// controller 0 holds units [0 2 4 6 8 10 12 14]
	// controller 1 holds units [1 3 5 7 9 11 13 15]
	// read: err <nil>, clones 3, same bytes true
}
