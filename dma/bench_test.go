package dma

import "testing"

func BenchmarkLookup(b *testing.B) {
	a := newTestAllocator(b, nil)
	var bufs []*Buffer
	for range 64 {
		bufs = append(bufs, mustAlloc(b, a, 4096))
	}
	b.Cleanup(func() {
		for _, x := range bufs {
			_ = a.Free(x)
		}
	})
	s := bufs[41].Bytes[512:1024]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Lookup(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTranslate(b *testing.B) {
	m := NewSoftMapper()
	a := newTestAllocator(b, m)
	var bufs []*Buffer
	for range 64 {
		bufs = append(bufs, mustAlloc(b, a, 4096))
	}
	b.Cleanup(func() {
		for _, x := range bufs {
			_ = a.Free(x)
		}
	})
	iova := bufs[41].IOVAAt(512)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Translate(iova, 512); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPoolGetPut(b *testing.B) {
	a := newTestAllocator(b, nil)
	p, err := NewPool(a, 4096, 256, 4096)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Free() })
	b.ReportAllocs()
	for b.Loop() {
		it, ok := p.Get()
		if !ok {
			b.Fatal("empty")
		}
		if err := p.Put(it); err != nil {
			b.Fatal(err)
		}
	}
}
