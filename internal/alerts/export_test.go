package alerts

// Idle reports whether nothing waits here to be examined, added, claimed
// or delivered.
func (a *Alerts) Idle() bool {
	return a.bal.idle() && a.spend.idle() && a.send.idle() && a.jobs.idle()
}

// Seen is the last revision of account id's record that Account was
// given.
func (a *Alerts) Seen(id string) uint64 {
	a.bal.mu.Lock()
	defer a.bal.mu.Unlock()
	return a.bal.seen[id].rev
}
