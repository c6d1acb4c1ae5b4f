// Package shrink gives back the memory of maps that a burst grew: Go's
// maps keep their size when entries are deleted.
package shrink

// Map returns m, or a copy of it sized for what it holds once it holds
// under a quarter of the most it held since the last copy (*peak, kept by
// the caller beside m). Call it after deleting from m.
func Map[K comparable, V any](m map[K]V, peak *int) map[K]V {
	*peak = max(*peak, len(m))
	if *peak < minPeak || len(m) >= *peak/4 {
		return m
	}
	n := make(map[K]V, len(m))
	for k, v := range m {
		n[k] = v
	}
	*peak = len(n)
	return n
}

// minPeak is the size below which a map is not worth copying.
const minPeak = 1024
