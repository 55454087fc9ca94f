package dma_test

import (
	"errors"
	"fmt"

	"github.com/seedb8fa28ef/gonvme/dma"
)

func Example() {
	m := dma.NewSoftMapper() // NewVFIOMapper(container) on a real device
	a, err := dma.NewAllocator(m, dma.WithHugePages(false))
	if err != nil {
		panic(err)
	}
	defer a.Close()

	buf, err := a.Alloc(8192)
	if err != nil {
		panic(err)
	}
	defer a.Free(buf)
	iova, _ := a.Lookup(buf.Bytes[4096:])
	fmt.Println("buffer at", buf.IOVA, "second page at", iova)

	// The device side sees the same bytes, reached by IOVA only.
	copy(buf.Bytes[4096:], "hello")
	dev, _ := m.Translate(iova, 5)
	fmt.Printf("device reads %q\n", dev)

	// Go heap memory is refused, not silently copied.
	_, err = a.Lookup(make([]byte, 512))
	fmt.Println(errors.Is(err, dma.ErrNotDMA))

	// PRP list pages: one mapping, many items.
	prps, err := dma.NewPool(a, 4096, 32, 4096)
	if err != nil {
		panic(err)
	}
	defer prps.Free()
	it, _ := prps.Get()
	fmt.Println("prp page", it.Index(), "at", it.IOVA)
	_ = prps.Put(it)
	// Output:
	// buffer at 0x1000 second page at 0x2000
	// device reads "hello"
	// true
	// prp page 0 at 0x3000
}
