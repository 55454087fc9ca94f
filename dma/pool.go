package dma

import (
	"errors"
	"fmt"
	"math/bits"
)

// Pool hands out fixed-size items carved from one Buffer, so that many small
// DMA buffers (PRP list pages, per-command data buffers) cost one mapping.
// Get and Put are O(1) and allocate nothing: the free items are a stack of
// indices.
//
// A Pool is NOT safe for concurrent use. It belongs to one goroutine,
// typically the poller that owns a queue pair, and only that goroutine may
// call its methods. Lookup on the Allocator works for item bytes from any
// goroutine, since the backing Buffer is an ordinary Allocator buffer.
type Pool struct {
	a        *Allocator
	buf      *Buffer
	itemSize int
	stride   int
	free     []int32 // stack of free item indices
	used     []bool  // used[i]: item i is handed out
	inUse    int
	badPuts  uint64
}

// Item is one pool item: Bytes for the CPU (len and cap are the item size),
// IOVA for the device. It is a small value; copy it freely, but Put it back
// once.
type Item struct {
	Bytes []byte
	IOVA  IOVA
	index int32
}

// Index returns the item's position in its pool, 0 to Len()-1: handy to key
// per-item state (e.g. the PRP list of command slot i).
func (it Item) Index() int { return int(it.index) }

// NewPool allocates one Buffer from a holding count items of itemSize bytes,
// each starting on a multiple of align (a power of two, at most a's page
// size; 0 means 1) in both the CPU's and the device's view. Items are
// spaced by itemSize rounded up to align. Any goroutine may call NewPool;
// the Pool then belongs to one goroutine.
func NewPool(a *Allocator, itemSize, count int, align int) (*Pool, error) {
	if align == 0 {
		align = 1
	}
	switch {
	case a == nil:
		return nil, errors.New("dma: new pool: nil allocator")
	case itemSize <= 0 || count <= 0:
		return nil, fmt.Errorf("dma: new pool of %d items of %d bytes: size and count must be positive", count, itemSize)
	case align < 0 || bits.OnesCount(uint(align)) != 1 || align > a.PageSize():
		return nil, fmt.Errorf("dma: new pool: alignment %d is not a power of two of at most the page size %d", align, a.PageSize())
	case count > 1<<31-1:
		return nil, fmt.Errorf("dma: new pool: %d items is too many", count)
	}
	stride, ok := roundUp(itemSize, align)
	hi, total := bits.Mul(uint(stride), uint(count))
	if !ok || hi != 0 || total > uint(int(^uint(0)>>1)) {
		return nil, fmt.Errorf("dma: new pool of %d items of %d bytes: size overflows", count, itemSize)
	}
	buf, err := a.Alloc(int(total))
	if err != nil {
		return nil, fmt.Errorf("dma: new pool of %d items of %d bytes: %w", count, itemSize, err)
	}
	p := &Pool{
		a:        a,
		buf:      buf,
		itemSize: itemSize,
		stride:   stride,
		free:     make([]int32, count),
		used:     make([]bool, count),
	}
	// Hand out low indices first: pop from the end.
	for i := range p.free {
		p.free[i] = int32(count - 1 - i)
	}
	return p, nil
}

// Len returns the number of items in the pool.
func (p *Pool) Len() int { return len(p.used) }

// ItemSize returns the size of each item's Bytes.
func (p *Pool) ItemSize() int { return p.itemSize }

// InUse returns the number of items handed out and not yet put back.
func (p *Pool) InUse() int { return p.inUse }

// BadPuts returns the number of Puts refused as double or foreign.
func (p *Pool) BadPuts() uint64 { return p.badPuts }

// Get returns a free item, or false when all are in use (or the pool was
// freed). The item's bytes hold whatever the last user left. It does not
// allocate. Only the pool's goroutine may call it.
func (p *Pool) Get() (Item, bool) {
	n := len(p.free)
	if n == 0 || p.buf == nil {
		return Item{}, false
	}
	i := p.free[n-1]
	p.free = p.free[:n-1]
	p.used[i] = true
	p.inUse++
	return p.item(i), true
}

// Item returns item i whether or not it is in use, e.g. to find the PRP
// list of command slot i. Only the pool's goroutine may call it.
func (p *Pool) Item(i int) (Item, bool) {
	if i < 0 || i >= len(p.used) || p.buf == nil {
		return Item{}, false
	}
	return p.item(int32(i)), true
}

// item builds the Item for index i.
func (p *Pool) item(i int32) Item {
	off := int(i) * p.stride
	end := off + p.itemSize
	return Item{Bytes: p.buf.Bytes[off:end:end], IOVA: p.buf.IOVA + IOVA(off), index: i}
}

// Put returns an item to the pool. An item this pool did not hand out (from
// another pool, a zero Item, a re-sliced one) is refused with ErrForeignItem,
// an item already free with ErrDoublePut; both are counted in BadPuts and
// leave the free list untouched. It does not allocate when it succeeds.
// Only the pool's goroutine may call it.
func (p *Pool) Put(it Item) error {
	if p.buf == nil {
		return fmt.Errorf("dma: pool put: pool: %w", ErrClosed)
	}
	i := it.index
	if i < 0 || int(i) >= len(p.used) || len(it.Bytes) != p.itemSize || cap(it.Bytes) != p.itemSize ||
		addrOf(it.Bytes) != addrOf(p.buf.Bytes)+uintptr(int(i)*p.stride) || it.IOVA != p.buf.IOVA+IOVA(int(i)*p.stride) {
		p.badPuts++
		return fmt.Errorf("dma: pool put of %d bytes at %v: %w", len(it.Bytes), it.IOVA, ErrForeignItem)
	}
	if !p.used[i] {
		p.badPuts++
		return fmt.Errorf("dma: pool put item %d: %w", i, ErrDoublePut)
	}
	p.used[i] = false
	p.inUse--
	p.free = append(p.free, i) // within capacity: never allocates
	return nil
}

// Free releases the pool's Buffer. If items are still in use it frees it
// anyway and returns an error wrapping ErrLeaked; the device must be done
// with all of them. Further Gets return false. Only the pool's goroutine may
// call it; calling it again returns nil.
func (p *Pool) Free() error {
	if p.buf == nil {
		return nil
	}
	inUse := p.inUse
	err := p.a.Free(p.buf)
	if err != nil {
		return fmt.Errorf("dma: pool free: %w", err)
	}
	p.buf = nil
	p.free = p.free[:0]
	if inUse > 0 {
		return fmt.Errorf("dma: pool free: %d of %d items of %d bytes still in use: %w", inUse, len(p.used), p.itemSize, ErrLeaked)
	}
	return nil
}
