package nvme

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

// FuzzCompletion writes arbitrary completion queue entries (CID, status,
// SQ head, phase) into a queue pair's completion ring and polls. The fake
// executes the commands but is told to lose every completion, so only the
// fuzzer writes to that ring. Nothing may panic; each request completes at
// most once and only for a CID it carries; the counters add up.
func FuzzCompletion(f *testing.F) {
	cqe := func(cid, status, head uint16, phase bool) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint16(b[0:], cid)
		binary.LittleEndian.PutUint16(b[2:], status)
		binary.LittleEndian.PutUint16(b[4:], head)
		if phase {
			b[6] = 1
		}
		return b
	}
	join := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	// Depth 8: 7 slots, 3 slot bits; the first use of slot s has CID 8|s.
	f.Add(join(cqe(8, 0, 1, true), cqe(9, 0, 2, true)))
	f.Add(join(cqe(8, 0, 1, true), cqe(8, 0, 1, true)))                     // duplicate
	f.Add(join(cqe(0xffff, 0, 1, true), cqe(7, 0, 1, true)))                // out of range, free slot
	f.Add(join(cqe(10, 0x0281<<1, 300, true), cqe(11, 0x4002<<1, 9, true))) // media error, bad head
	f.Add(join(cqe(12, 0, 1, false), cqe(13, 0, 1, true)))                  // wrong phase stops the reap
	f.Add(join(cqe(8, 0, 1, true), cqe(9, 0, 1, true), cqe(10, 0, 1, true), cqe(11, 0, 1, true), cqe(12, 0, 1, true), cqe(13, 0, 1, true), cqe(14, 0, 1, true), cqe(8, 0, 1, true)))
	f.Fuzz(func(t *testing.T, data []byte) {
		fake, err := nvmetest.New(nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 64}}})
		if err != nil {
			t.Fatal(err)
		}
		defer fake.Close()
		mem, err := dma.NewAllocator(fake.Mapper())
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Close()
		c, err := Open(fake, mem, &Options{AsyncEvents: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		q, err := c.NewQueuePair(8)
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		ns, _ := c.Namespace(1)
		fake.Lose(nvmetest.AnyIO(), -1)

		const n = 7
		var reqs [n]Request
		var done [n]int
		buf, err := mem.Alloc(n * 512)
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Free(buf)
		cids := map[uint16]int{}
		for i := range reqs {
			reqs[i].Private = i
			reqs[i].Done = func(r *Request) { done[r.Private.(int)]++ }
			if err := ns.Read(&reqs[i], uint64(i), buf.Bytes[i*512:(i+1)*512], 0); err != nil {
				t.Fatal(err)
			}
			if err := q.Submit(&reqs[i]); err != nil {
				t.Fatal(err)
			}
		}
		for i := range q.trk {
			if q.trk[i].req != nil {
				cids[q.trk[i].gen<<q.slotBits|uint16(i)] = q.trk[i].req.Private.(int)
			}
		}
		q.Ring()
		// Wait until the fake has taken (and lost) every command, so
		// nothing but this test writes the completion ring.
		for start := time.Now(); fake.Held() < n; {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("the fake took %d of %d commands", fake.Held(), n)
			}
		}

		consumed := 0
		consumedCIDs := map[uint16]bool{}
		reaping := true
		head, phase := q.cqHead, q.phase
		for k := 0; k+8 <= len(data) && k/8 < int(q.size)-1; k += 8 {
			e := &q.cq[(int(head)+k/8)%int(q.size)]
			cid := binary.LittleEndian.Uint16(data[k:])
			st := binary.LittleEndian.Uint16(data[k+2:]) &^ 1
			ph := data[k+6]&1 != 0
			e.DW0 = uint32(k)
			e.SQHead = binary.LittleEndian.Uint16(data[k+4:])
			e.CID = cid
			if ph {
				st |= 1
			}
			e.Status = st
			if reaping && ph == phase {
				consumed++
				consumedCIDs[cid] = true
			} else {
				reaping = false
			}
		}
		var before [n]int
		copy(before[:], done[:])
		got := q.Poll()
		if got != consumed {
			t.Fatalf("poll reaped %d entries, %d carried the phase", got, consumed)
		}
		s := q.Stats()
		total := 0
		for i, d := range done {
			if d > 1 {
				t.Fatalf("request %d completed %d times", i, d)
			}
			total += d
		}
		if int(s.Completed) != total || int(s.Completed+s.BogusCIDs) != consumed {
			t.Fatalf("completed %d + bogus %d != %d reaped (done %d)", s.Completed, s.BogusCIDs, consumed, total)
		}
		if q.InFlight() != n-total {
			t.Fatalf("in flight %d, want %d", q.InFlight(), n-total)
		}
		for i := range reqs {
			if done[i] == 1 && !reqs[i].Status.Success() && reqs[i].Err == nil {
				t.Fatalf("request %d: status %v without an error", i, reqs[i].Status)
			}
		}
		for cid, i := range cids {
			if done[i] == 1 && !consumedCIDs[cid] {
				t.Fatalf("request %d (cid %d) completed by an entry that did not carry its cid", i, cid)
			}
		}
	})
}
