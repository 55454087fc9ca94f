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
//	   └─ else Bioclone(bp, off, len, ...) per piece ──► clone c1 c2 ... cn
//	                                                       │ embedded nvme.Request
//	                                                       ▼
//	                     Submitter.Submit(&c.req) ──► QueuePair ──► device
//	                                                       │
//	          QueuePair.Poll ──► Request.Done (reqDone) ◄──┘
//	                                   │ result into c (Error, Resid)
//	                                   ▼
//	                               Biodone(c) ── account into bp: inbed++,
//	                                   │         completed += bytes, first error
//	                                   ▼
//	                               c.Iodone (Freerbuf the header)
//	                                   │ last piece in
//	                                   ▼
//	                               Biodone(bp) ── BDone, Resid, Error
//	                                   ├─ bp.Iodone(bp), or
//	                                   └─ wakes Biowait(bp)
//
// Strategy holds one count on bp while it makes and submits the pieces,
// so bp is never delivered before the last piece exists, whichever
// goroutine completes pieces meanwhile. Nothing on this path allocates in
// steady state: headers come from a preallocated Pool, each with its own
// nvme.Request and completion token; errors are stored in the header.
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
// original) is detected.
//
// # Goroutines
//
// Getrbuf, Freerbuf, Bioclone, Biodone, Biowait, Strategy, Register,
// Unregister and Lookup may be called from any goroutine. A Buf belongs to
// one owner at a time: the caller until Strategy, the package and the
// completion path until delivery, then the caller again (in Iodone or after
// Biowait). Iodone, and every Biodone of the pieces, runs on the goroutine
// that runs the request's Done: the goroutine calling Strategy with a
// SyncSubmitter (so the buffer is delivered before Strategy returns), a
// poller's goroutine with package poller's Submitter (Strategy returns at
// once, delivery comes later). An Iodone must not block.
//
// # Imports
//
// nvme (namespaces, requests, status errors), dma (to check buffers are
// DMA memory) and the standard library.
package ddi
