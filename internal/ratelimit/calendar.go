package ratelimit

import "time"

// Calendar is a window aligned on UTC calendar periods.
type Calendar uint8

// Calendar periods. A week starts on Monday.
const (
	NoCalendar Calendar = iota
	Day
	Week
	Month
)

// grid returns the window of lim that holds t (unix nanoseconds): a
// calendar period, or the one of Window's grid for id (see grid).
func (lim Limit) grid(id string, t int64) (start, end int64) {
	if lim.Calendar == NoCalendar {
		return grid(id, int64(lim.Window), t)
	}
	d := time.Unix(0, t).UTC()
	day := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)
	var s, e time.Time
	switch lim.Calendar {
	case Day:
		s, e = day, day.AddDate(0, 0, 1)
	case Week:
		s = day.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
		e = s.AddDate(0, 0, 7)
	default:
		s = time.Date(d.Year(), d.Month(), 1, 0, 0, 0, 0, time.UTC)
		e = s.AddDate(0, 1, 0)
	}
	return s.UnixNano(), e.UnixNano()
}
