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

// Indexes lists the names of the indexes defined with CREATE INDEX, read
// on a reader connection.
func Indexes(s *Store) ([]string, error) {
	var names []string
	err := s.r.Select(&names, `SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name`)
	return names, err
}
