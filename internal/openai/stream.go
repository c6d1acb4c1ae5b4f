package openai

import "bytes"

// MaxEvent bounds the data of one server-sent event that Stream buffers.
// A larger event is counted but not read for usage.
const MaxEvent = 1 << 20

// Stream reads the usage of a text/event-stream response body fed to it
// in chunks split anywhere. It follows the WHATWG server-sent events
// parsing rules (lines end in CRLF, LF or CR; "data:" with one optional
// space; the data lines of an event joined with LF; ":" comments; an
// event ends at a blank line; an unfinished last event is dropped; one
// leading byte order mark ignored). Each event's data is read as
// ParseUsage reads a body; the last usage found wins. Other fields
// ("event", "id", "retry") are ignored. The zero Stream is ready.
type Stream struct {
	phase   uint8
	afterCR bool  // the last line ended in CR: a LF next is part of it
	name    uint8 // bytes of the field name read
	isData  bool  // the field name read so far is a prefix of "data"
	data    []byte
	size    int64 // data bytes of the event, buffered or not
	hasData bool
	over    bool // the event's data passed MaxEvent

	usage    Usage
	events   int64
	outBytes int64
	skipped  int64
}

// Line phases.
const (
	phaseBOM   = iota // nothing read yet
	phaseStart        // at the start of a line
	phaseName         // in a field name
	phaseSpace        // just after "data:"
	phaseValue        // in a data value
	phaseSkip         // in a line that is ignored
)

const bom = "\xef\xbb\xbf"

// Usage returns the last usage found, if any.
func (s *Stream) Usage() Usage { return s.usage }

// Events returns how many events with data were seen, [DONE] excluded.
func (s *Stream) Events() int64 { return s.events }

// OutputBytes returns the bytes of those events' data.
func (s *Stream) OutputBytes() int64 { return s.outBytes }

// Skipped returns how many of those events had more than MaxEvent bytes
// of data, and so were not read for usage. A Responses API
// response.completed event repeats the whole response, so one with more
// than about 1 MiB of output (images in base64, say) is skipped and its
// usage not found.
func (s *Stream) Skipped() int64 { return s.skipped }

// Write reads the next chunk of the body. Its cost is linear in len(p).
func (s *Stream) Write(p []byte) {
	for len(p) > 0 {
		switch s.phase {
		case phaseBOM:
			p = s.bom(p)
		case phaseStart:
			c := p[0]
			p = p[1:]
			switch {
			case c == '\n' && s.afterCR:
				s.afterCR = false
			case c == '\r' || c == '\n':
				s.afterCR = c == '\r'
				s.dispatch()
			case c == ':':
				s.afterCR = false
				s.phase = phaseSkip
			default:
				s.afterCR = false
				s.phase, s.name, s.isData = phaseName, 1, c == 'd'
			}
		case phaseName:
			p = s.fieldName(p)
		case phaseSpace:
			if p[0] == ' ' {
				p = p[1:]
			}
			s.phase = phaseValue
		case phaseValue:
			i := eol(p)
			if i < 0 {
				s.appendData(p)
				return
			}
			s.appendData(p[:i])
			p = s.endLine(p, i)
		case phaseSkip:
			i := eol(p)
			if i < 0 {
				return
			}
			p = s.endLine(p, i)
		}
	}
}

// bom matches a leading byte order mark; a partial match that fails is
// the start of a field name that is not "data".
func (s *Stream) bom(p []byte) []byte {
	for len(p) > 0 && s.name < 3 && p[0] == bom[s.name] {
		p = p[1:]
		s.name++
	}
	switch {
	case s.name == 3:
		s.phase, s.name = phaseStart, 0
	case len(p) == 0:
	case s.name == 0:
		s.phase = phaseStart
	default:
		s.phase, s.isData = phaseName, false
	}
	return p
}

// fieldName reads a field name up to its ':' or the end of the line.
func (s *Stream) fieldName(p []byte) []byte {
	for i, c := range p {
		switch c {
		case ':':
			if s.data4() {
				s.beginData()
				s.phase = phaseSpace
			} else {
				s.phase = phaseSkip
			}
			return p[i+1:]
		case '\r', '\n':
			if s.data4() { // "data" alone: an empty data line
				s.beginData()
			}
			return s.endLine(p, i)
		}
		s.isData = s.isData && s.name < 4 && c == "data"[s.name]
		if s.name < 255 {
			s.name++
		}
	}
	return nil
}

func (s *Stream) data4() bool { return s.isData && s.name == 4 }

// endLine ends the line at p[i] (CR or LF) and returns what follows.
func (s *Stream) endLine(p []byte, i int) []byte {
	s.afterCR = p[i] == '\r'
	s.phase = phaseStart
	return p[i+1:]
}

// eol returns the index of the first CR or LF in p, or -1.
func eol(p []byte) int {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		return bytes.IndexByte(p, '\r')
	}
	if j := bytes.IndexByte(p[:i], '\r'); j >= 0 {
		return j
	}
	return i
}

// beginData starts a data line, joined to the previous one with LF.
func (s *Stream) beginData() {
	if s.hasData {
		s.appendData([]byte{'\n'})
	}
	s.hasData = true
}

func (s *Stream) appendData(b []byte) {
	s.size += int64(len(b))
	if s.over {
		return
	}
	n := len(s.data) + len(b)
	switch {
	case n > MaxEvent:
		s.over = true
		s.data = nil
		return
	case n > cap(s.data): // grow, never past MaxEvent
		s.data = append(make([]byte, 0, min(max(2*cap(s.data), n, 512), MaxEvent)), s.data...)
	}
	s.data = append(s.data, b...)
}

// dispatch ends an event at a blank line.
func (s *Stream) dispatch() {
	if s.hasData && (s.over || string(s.data) != "[DONE]") {
		s.events++
		s.outBytes += s.size
		if s.over {
			s.skipped++
		} else if u, err := ParseUsage(s.data); err == nil && u.Found {
			s.usage = u
		}
	}
	if cap(s.data) > 64<<10 {
		s.data = nil // a large event's buffer is not kept
	}
	s.data, s.size, s.hasData, s.over = s.data[:0], 0, false, false
}
