package readstore

// SetFailHook makes Apply fail, rolling back its transaction, when fn
// returns an error for the event about to be applied: a crash mid-batch.
func SetFailHook(s *Store, fn func(Event) error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.failHook = fn
}

// Pragma reads a PRAGMA on the writer and on a reader connection.
func Pragma(s *Store, name string) (writer, reader string, err error) {
	if err = s.w.Get(&writer, "PRAGMA "+name); err != nil {
		return
	}
	err = s.r.Get(&reader, "PRAGMA "+name)
	return
}
