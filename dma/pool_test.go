package dma

import (
	"errors"
	"slices"
	"testing"
)

func newTestPool(t testing.TB, a *Allocator, size, count, align int) *Pool {
	t.Helper()
	p, err := NewPool(a, size, count, align)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Free(); err != nil {
			t.Errorf("pool free: %v", err)
		}
	})
	return p
}

func TestPoolGetPut(t *testing.T) {
	m := NewSoftMapper()
	a := newTestAllocator(t, m, WithHugePages(false))
	p := newTestPool(t, a, 4096, 8, 4096)
	if st := a.Stats(); st.Buffers != 1 || m.Mappings() != 1 {
		t.Fatalf("a pool of 8 items holds %d buffers, %d mappings; want 1", st.Buffers, m.Mappings())
	}
	var items []Item
	seen := map[IOVA]bool{}
	for i := range 8 {
		it, ok := p.Get()
		if !ok {
			t.Fatalf("Get %d failed", i)
		}
		if len(it.Bytes) != 4096 || cap(it.Bytes) != 4096 || uint64(it.IOVA)%4096 != 0 || seen[it.IOVA] {
			t.Fatalf("item %d: len %d cap %d IOVA %v (dup %v)", i, len(it.Bytes), cap(it.Bytes), it.IOVA, seen[it.IOVA])
		}
		seen[it.IOVA] = true
		if got, err := a.Lookup(it.Bytes[100:200]); err != nil || got != it.IOVA+100 {
			t.Errorf("Lookup in item %d = %v, %v", i, got, err)
		}
		if same, _ := p.Item(it.Index()); same.IOVA != it.IOVA || &same.Bytes[0] != &it.Bytes[0] {
			t.Errorf("Item(%d) is not the item Get returned", it.Index())
		}
		items = append(items, it)
	}
	if _, ok := p.Get(); ok {
		t.Fatal("Get from an empty pool succeeded")
	}
	if p.InUse() != 8 || p.Len() != 8 || p.ItemSize() != 4096 {
		t.Fatalf("InUse %d Len %d ItemSize %d", p.InUse(), p.Len(), p.ItemSize())
	}
	for _, it := range items {
		if err := p.Put(it); err != nil {
			t.Fatal(err)
		}
	}
	if p.InUse() != 0 {
		t.Fatalf("InUse = %d after putting everything back", p.InUse())
	}
	// LIFO: the last item put back comes out first.
	if it, _ := p.Get(); it.IOVA != items[7].IOVA {
		t.Errorf("Get after Put returned %v, want %v", it.IOVA, items[7].IOVA)
	} else if err := p.Put(it); err != nil {
		t.Fatal(err)
	}
}

func TestPoolBadPuts(t *testing.T) {
	a := newTestAllocator(t, nil)
	p := newTestPool(t, a, 512, 4, 512)
	q := newTestPool(t, a, 512, 4, 512)
	it, _ := p.Get()
	keep, _ := p.Get()
	if err := p.Put(it); err != nil {
		t.Fatal(err)
	}
	if err := p.Put(it); !errors.Is(err, ErrDoublePut) {
		t.Fatalf("double Put = %v, want ErrDoublePut", err)
	}
	qit, _ := q.Get()
	resliced := keep
	resliced.Bytes = keep.Bytes[:100]
	shifted := keep
	shifted.IOVA += 512
	wrongIndex := qit
	wrongIndex.index = keep.index
	foreign := map[string]Item{
		"another pool's item":    qit,
		"zero item":              {},
		"resliced item":          resliced,
		"item with a moved IOVA": shifted,
		"index of a live item":   wrongIndex,
		"index out of range":     {Bytes: keep.Bytes, IOVA: keep.IOVA, index: 99},
	}
	for name, f := range foreign {
		if err := p.Put(f); !errors.Is(err, ErrForeignItem) {
			t.Errorf("Put of %s = %v, want ErrForeignItem", name, err)
		}
	}
	if p.BadPuts() != 1+uint64(len(foreign)) {
		t.Errorf("BadPuts = %d, want %d", p.BadPuts(), 1+len(foreign))
	}
	// The free list is intact: exactly 3 distinct items come out, then none.
	if p.InUse() != 1 {
		t.Fatalf("InUse = %d, want 1", p.InUse())
	}
	var got []IOVA
	for {
		it, ok := p.Get()
		if !ok {
			break
		}
		got = append(got, it.IOVA)
	}
	slices.Sort(got)
	if len(got) != 3 || len(slices.Compact(got)) != 3 || slices.Contains(got, keep.IOVA) {
		t.Fatalf("after bad puts the pool handed out %v (live: %v)", got, keep.IOVA)
	}
	for _, iova := range append(got, keep.IOVA) {
		it, _ := p.Item(int((iova - p.buf.IOVA) / 512))
		if err := p.Put(it); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Put(qit); err != nil {
		t.Fatal(err)
	}
}

// TestPoolGuardBytes writes a pattern into one item and checks that every
// other byte of the pool's buffer, padding included, is untouched.
func TestPoolGuardBytes(t *testing.T) {
	m := NewSoftMapper()
	a := newTestAllocator(t, m)
	p := newTestPool(t, a, 100, 5, 64) // stride 128: 28 bytes of padding per item
	var items []Item
	for range 5 {
		it, _ := p.Get()
		items = append(items, it)
	}
	mid := items[2]
	if mid.IOVA%64 != 0 || addrOf(mid.Bytes)%64 != 0 {
		t.Errorf("item at %v / %#x is not 64-byte aligned", mid.IOVA, addrOf(mid.Bytes))
	}
	for i := range mid.Bytes {
		mid.Bytes[i] = 0x5a
	}
	// Look through the device's eyes at the whole backing buffer.
	all, err := m.Translate(p.buf.IOVA, p.buf.Mapped())
	if err != nil {
		t.Fatal(err)
	}
	start := int(mid.IOVA - p.buf.IOVA)
	for i, c := range all {
		want := byte(0)
		if i >= start && i < start+100 {
			want = 0x5a
		}
		if c != want {
			t.Fatalf("byte %d of the pool buffer is %#x, want %#x", i, c, want)
		}
	}
	for _, it := range items {
		if err := p.Put(it); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPoolFree(t *testing.T) {
	m := NewSoftMapper()
	a := newTestAllocator(t, m)
	p, err := NewPool(a, 64, 16, 0)
	if err != nil {
		t.Fatal(err)
	}
	it, _ := p.Get()
	if err := p.Free(); !errors.Is(err, ErrLeaked) {
		t.Fatalf("Free with an item out = %v, want ErrLeaked", err)
	}
	if m.Mappings() != 0 || a.Stats().Buffers != 0 {
		t.Error("Free did not release the backing buffer")
	}
	if _, ok := p.Get(); ok {
		t.Error("Get after Free succeeded")
	}
	if err := p.Put(it); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Free = %v, want ErrClosed", err)
	}
	if err := p.Free(); err != nil {
		t.Errorf("second Free = %v", err)
	}
}

func TestPoolBadArgs(t *testing.T) {
	a := newTestAllocator(t, nil)
	for _, c := range []struct{ size, count, align int }{
		{0, 1, 1}, {1, 0, 1}, {-1, 1, 1}, {64, 4, 3}, {64, 4, -8}, {64, 4, 1 << 20}, {1 << 40, 1 << 40, 1},
	} {
		if p, err := NewPool(a, c.size, c.count, c.align); err == nil {
			t.Errorf("NewPool(%d, %d, %d) succeeded", c.size, c.count, c.align)
			_ = p.Free()
		}
	}
	if _, err := NewPool(nil, 1, 1, 1); err == nil {
		t.Error("NewPool(nil allocator) succeeded")
	}
}

func TestPoolAllocs(t *testing.T) {
	a := newTestAllocator(t, nil)
	p := newTestPool(t, a, 4096, 32, 4096)
	n := testing.AllocsPerRun(1000, func() {
		it, ok := p.Get()
		if !ok {
			t.Fatal("empty")
		}
		it2, _ := p.Get()
		if err := p.Put(it); err != nil {
			t.Fatal(err)
		}
		if err := p.Put(it2); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("Get+Put allocates %v times, want 0", n)
	}
}
