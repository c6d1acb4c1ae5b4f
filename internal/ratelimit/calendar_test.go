package ratelimit

import (
	"testing"
	"time"
)

func TestCalendarWindows(t *testing.T) {
	at := func(s string) int64 {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UnixNano()
	}
	for _, tc := range []struct {
		cal        Calendar
		t          string
		start, end string
	}{
		{Day, "2026-12-06T23:59:59Z", "2026-12-06T00:00:00Z", "2026-12-07T00:00:00Z"},
		{Day, "2026-12-06T20:00:00-05:00", "2026-12-07T00:00:00Z", "2026-12-08T00:00:00Z"},
		{Week, "2026-12-06T12:00:00Z", "2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z"}, // a Sunday
		{Week, "2026-12-07T00:00:00Z", "2026-12-07T00:00:00Z", "2026-12-14T00:00:00Z"}, // a Monday
		{Month, "2028-02-29T10:00:00Z", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"},
		{Month, "2026-12-31T23:00:00Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"},
	} {
		s, e := Limit{Units: 10, Window: 24 * time.Hour, Calendar: tc.cal}.grid("k", at(tc.t))
		if s != at(tc.start) || e != at(tc.end) {
			t.Errorf("%v at %s: [%s, %s)", tc.cal, tc.t, time.Unix(0, s).UTC(), time.Unix(0, e).UTC())
		}
	}
}

// A month's window has its whole limit whatever its length: only a
// window cut short by another is prorated.
func TestCalendarLimitNotProrated(t *testing.T) {
	lim := Limit{Units: 3000, Window: 30 * 24 * time.Hour, Calendar: Month}
	feb := time.Date(2027, 2, 10, 0, 0, 0, 0, time.UTC).UnixNano()
	if w := (Entry{}).begin("k", lim, feb); w.Limit != 3000 || time.Duration(w.Len) != 28*24*time.Hour {
		t.Fatalf("February's window: %+v", w)
	}
}
