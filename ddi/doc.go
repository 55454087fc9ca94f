// Package ddi is the block layer of gonvme: the buffer header of buf(9S)
// and the bio functions of the Solaris DDI (getrbuf, freerbuf, bioinit,
// bioreset, bioclone, biodone, biowait, bioerror, geterror), in Go, with
// GEOM's parent accounting (g_bio(9): children, inbed, completed), and the
// namespace strategy routine that splits a transfer into the commands an
// NVMe controller accepts.
//
// # One transfer
//
//	caller: Getrbuf / Bioinit, set Flags Edev Bcount Addr Blkno [Iodone]
//	   │
//	   ▼
//	Strategy(bp) ── Edev ──► Device (Register: namespace + Submitter)
//	   │  validate; end-of-device rules of biodone(9F)
//	   │  split at NOIOB, MaxBlocks (MDTS, Submitter/PRP limit)
//	   │
//	   ├─ fits one command: bp's own embedded nvme.Request
//	   └─ else a clone of bp per piece (header from the Pool, at most
//	      MaxChildren in flight) ──► clone c1 c2 ... cn
//	                                   │ embedded nvme.Request
//	                                   ▼
//	                     Submitter.Submit(&c.req) ──► QueuePair ──► device
//	                                                       │
//	          QueuePair.Poll ──► Request.Done (reqDone) ◄──┘
//	                                   │ result into c (Error, Resid)
//	                                   ▼
//	                               completion of c ── account into bp: inbed++,
//	                                   │              completed += bytes, first error
//	                                   ▼
//	                               c's header carries bp's next piece
//	                                   │ (or goes back to the Pool)
//	                                   │ last piece in
//	                                   ▼
//	                               Biodone(bp) ── BDone, Resid, Error
//	                                   ├─ bp.Iodone(bp), or
//	                                   └─ wakes Biowait(bp)
//
// Strategy holds one count on bp until the last piece is sent, so bp is
// never delivered before the last piece exists, whichever goroutine
// completes pieces meanwhile. Nothing on this path allocates in steady
// state: headers come from a preallocated Pool, each with its own
// nvme.Request and completion token; errors are stored in the header.
//
// # Under pressure
//
// Strategy never blocks. A transfer holds at most MaxChildren headers;
// when it has none in hand (all in flight, or the pool is empty) or the
// Submitter has no room (an error matching syscall.EAGAIN, as package
// poller's ErrBusy under FullFail), the rest of the split waits on a
// queue and continues when one of its pieces comes back, or, with nothing
// of it in flight, on the pool's helper goroutine (which runs only while
// splits wait). So an Iodone running on a poller may call Strategy even
// when the pool is nearly empty: it never stalls the poller that would
// free the headers. StrategyNoSleep instead takes every header up front
// or refuses the transfer (ErrNoHeaders, ENOMEM) before sending anything;
// a Submitter without room for the first command refuses the whole
// transfer (EAGAIN). A transfer once accepted never fails for want of
// room. See split.go for the handshake.
//
// # Mapping from the seed pages
//
// Buf fields are the buf(9S) members (b_flags → Flags, av_forw/av_back →
// AvForw/AvBack, b_bcount → Bcount, b_un.b_addr → Addr, b_blkno/b_lblkno →
// Blkno/Lblkno, b_resid → Resid, b_bufsize → Bufsize, b_iodone → Iodone,
// b_error → Error (a Go error; errors.Is finds the errno), b_private →
// Private, b_edev → Edev) plus Cmd for GEOM's BIO_DELETE and BIO_FLUSH.
// B_BUSY, B_DONE, B_ERROR, B_READ are BBusy, BDone, BError, BRead; B_WRITE
// is BWrite == 0, the absence of BRead. KM_SLEEP and KM_NOSLEEP are KMSleep
// and KMNoSleep. See Biodone and Bioclone for how misuse the pages forbid
// (biodone of an original before its clones, a clone range beyond the
// original) is detected. The substitute-iodone pattern of the biodone(9F)
// NOTES (save b_iodone, put one's own, restore it and biodone again) works
// after Strategy too: a buffer delivered to its Iodone is the driver's
// again. GEOM's BIO_GETATTR is Getattr (block, media and stripe size,
// candelete, ident, lunid).
//
// # Goroutines
//
// Getrbuf, Freerbuf, Bioclone, Biodone, Biowait, Strategy, Register,
// Unregister, Lookup and Getattr may be called from any goroutine. A Buf
// belongs to one owner at a time: the caller until Strategy, the package
// and the completion path until delivery, then the caller again (in Iodone
// or after Biowait). Iodone, and the completion of every piece, runs on
// the goroutine that runs the request's Done: the goroutine calling
// Strategy with a SyncSubmitter (so the buffer is delivered before
// Strategy returns), a poller's goroutine with package poller's Submitter
// (Strategy returns at once, delivery comes later); or, for a split that
// waited on its pool's queue with nothing in flight, the pool's helper
// goroutine. An Iodone must not block; it may call Strategy.
//
// # Imports
//
// nvme (namespaces, requests, status errors), dma (to check buffers are
// DMA memory) and the standard library.
package ddi
