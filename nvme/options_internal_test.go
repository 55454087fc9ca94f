package nvme

import (
	"testing"
	"time"
)

// TestOptionDefaults: the zero Options give the documented defaults; in
// particular the shutdown wait is capped at 60 s whatever RTD3E claims.
func TestOptionDefaults(t *testing.T) {
	var o Options
	o.setDefaults()
	want := Options{IOQueues: 16, IOQueueDepth: 256, AdminQueueDepth: 32, MaxTransfer: 1 << 20,
		CommandTimeout: 30 * time.Second, AbortTimeout: 5 * time.Second, AdminTimeout: 30 * time.Second,
		ShutdownTimeout: 60 * time.Second, AsyncEvents: 4, WatchInterval: 100 * time.Millisecond, MaxNamespaces: 1024}
	if o.IOQueues != want.IOQueues || o.IOQueueDepth != want.IOQueueDepth || o.AdminQueueDepth != want.AdminQueueDepth ||
		o.MaxTransfer != want.MaxTransfer || o.CommandTimeout != want.CommandTimeout || o.AbortTimeout != want.AbortTimeout ||
		o.AdminTimeout != want.AdminTimeout || o.ShutdownTimeout != want.ShutdownTimeout || o.AsyncEvents != want.AsyncEvents ||
		o.WatchInterval != want.WatchInterval || o.MaxNamespaces != want.MaxNamespaces {
		t.Errorf("defaults %+v", o)
	}
	c := &Controller{opts: o, toutCAP: 500 * time.Millisecond}
	if got := c.shutdownWait(); got != 5*time.Second {
		t.Errorf("shutdown wait without RTD3E %v, want 5 s", got)
	}
}
