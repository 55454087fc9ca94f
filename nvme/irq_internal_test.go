package nvme

import (
	"testing"
	"time"
)

func TestWatchInterval(t *testing.T) {
	for _, tt := range []struct {
		irq         bool
		watch, abrt time.Duration
		want        time.Duration
	}{
		{false, 100 * time.Millisecond, 5 * time.Second, 100 * time.Millisecond},
		{true, 100 * time.Millisecond, 5 * time.Second, time.Second},
		{true, 100 * time.Millisecond, 400 * time.Millisecond, 200 * time.Millisecond},
		{true, 100 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond},
		{true, 3 * time.Second, 5 * time.Second, 3 * time.Second},
	} {
		c := &Controller{opts: Options{WatchInterval: tt.watch, AbortTimeout: tt.abrt}, adminIRQ: tt.irq}
		if got := c.watchInterval(); got != tt.want {
			t.Errorf("irq %v, WatchInterval %v, AbortTimeout %v: %v, want %v", tt.irq, tt.watch, tt.abrt, got, tt.want)
		}
	}
}

func TestCoalescingCDW11(t *testing.T) {
	for _, tt := range []struct {
		c    Coalescing
		want uint32
		ok   bool
	}{
		{Coalescing{Threshold: 1}, 0, true},
		{Coalescing{Threshold: 8, Time: 300 * time.Microsecond}, 7 | 3<<8, true},
		{Coalescing{Threshold: 256, Time: 25500 * time.Microsecond}, 255 | 255<<8, true},
		{Coalescing{Time: 150 * time.Microsecond}, 1 << 8, true},
		{Coalescing{Threshold: 257}, 0, false},
		{Coalescing{Time: 26 * time.Millisecond}, 0, false},
		{Coalescing{Threshold: -1}, 0, false},
	} {
		got, err := tt.c.cdw11()
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%+v: %#x, %v; want %#x (ok %v)", tt.c, got, err, tt.want, tt.ok)
		}
	}
}
