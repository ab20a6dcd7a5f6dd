package embedded

import (
	"context"
	"math"
	"regexp"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	pageSize          = 512
	allPageSize       = 2048 // rows per SQLite query of $all reads and catch-up
	defaultSearchWind = 32
)

// filter is a server-side $all filter on stream name or event type.
type filter struct {
	onType   bool
	prefixes []string
	re       *regexp.Regexp
	interval uint64 // checkpoint every interval scanned events
}

func newFilter(fo *streams.ReadReq_Options_FilterOptions) (*filter, error) {
	if fo == nil {
		return nil, nil
	}
	f := &filter{}
	var expr *streams.ReadReq_Options_FilterOptions_Expression
	switch v := fo.GetFilter().(type) {
	case *streams.ReadReq_Options_FilterOptions_StreamIdentifier:
		expr = v.StreamIdentifier
	case *streams.ReadReq_Options_FilterOptions_EventType:
		expr, f.onType = v.EventType, true
	default:
		return nil, status.Error(codes.InvalidArgument, "filter needs a stream identifier or event type expression")
	}
	f.prefixes = expr.GetPrefix()
	if len(f.prefixes) == 0 {
		re, err := regexp.Compile(expr.GetRegex())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "invalid filter regex %q: %v", expr.GetRegex(), err)
		}
		f.re = re
	}
	window := uint64(defaultSearchWind)
	if m, ok := fo.GetWindow().(*streams.ReadReq_Options_FilterOptions_Max); ok && m.Max > 0 {
		window = uint64(m.Max)
	}
	mult := uint64(fo.GetCheckpointIntervalMultiplier())
	if mult == 0 {
		mult = 1
	}
	f.interval = window * mult
	return f, nil
}

func (f *filter) match(r *record) bool {
	if f == nil {
		return true
	}
	s := r.stream
	if f.onType {
		s = r.typ
	}
	if f.re != nil {
		return f.re.MatchString(s)
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// matchRaw is match for a row scanned from SQLite.
func (f *filter) matchRaw(stream, typ []byte) bool {
	if f == nil {
		return true
	}
	s := stream
	if f.onType {
		s = typ
	}
	if f.re != nil {
		return f.re.Match(s)
	}
	for _, p := range f.prefixes {
		if len(s) >= len(p) && string(s[:len(p)]) == p {
			return true
		}
	}
	return false
}

// Read serves count reads and subscriptions of a stream or $all.
func (h *streamsService) Read(req *streams.ReadReq, srv streams.Streams_ReadServer) error {
	o := req.GetOptions()
	if o == nil {
		return status.Error(codes.InvalidArgument, "read options are required")
	}
	f, err := newFilter(o.GetFilter())
	if err != nil {
		return err
	}
	uuidString := o.GetUuidOption().GetString_() != nil
	backwards := o.GetReadDirection() == streams.ReadReq_Options_Backwards
	sub := o.GetSubscription() != nil
	switch so := o.GetStreamOption().(type) {
	case *streams.ReadReq_Options_Stream:
		name := string(so.Stream.GetStreamIdentifier().GetStreamName())
		if name == "" {
			return status.Error(codes.InvalidArgument, "stream name is required")
		}
		if sub {
			return h.subscribeStream(srv, name, so.Stream, uuidString)
		}
		return h.readStream(srv, name, so.Stream, backwards, o.GetCount(), uuidString)
	case *streams.ReadReq_Options_All:
		if sub {
			return h.subscribeAll(srv, so.All, f, uuidString)
		}
		return h.readAll(srv, so.All, backwards, o.GetCount(), f, uuidString)
	default:
		return status.Error(codes.InvalidArgument, "read needs a stream or $all")
	}
}

func clampCount(n uint64) int64 {
	if n > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}

func (h *streamsService) readStream(srv streams.Streams_ReadServer, name string, so *streams.ReadReq_Options_StreamOptions, backwards bool, count uint64, uuidString bool) error {
	ctx := srv.Context()
	committed, s := h.st.view(name)
	if base, ok := metaStreamOf(name); ok {
		if b := h.st.stream(base); b != nil && b.tombstoned {
			return deletedError(ctx, name)
		}
	}
	if s != nil && s.tombstoned {
		return deletedError(ctx, name)
	}
	if s == nil || s.lastRev < 0 || s.softDeleted() {
		return srv.Send(&streams.ReadResp{Content: &streams.ReadResp_StreamNotFound_{StreamNotFound: &streams.ReadResp_StreamNotFound{
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)},
		}}})
	}
	// Lowest visible revision under $tb, $maxCount and the implicit
	// $maxCount=1 of metadata streams.
	low := int64(0)
	if s.meta.tb > low {
		low = s.meta.tb
	}
	maxCount := s.meta.maxCount
	if _, ok := metaStreamOf(name); ok {
		maxCount = 1
	}
	if maxCount > 0 && s.lastRev-maxCount+1 > low {
		low = s.lastRev - maxCount + 1
	}
	minCreated := int64(math.MinInt64)
	if s.meta.maxAge > 0 {
		minCreated = h.st.nowTicks() - s.meta.maxAge*10_000_000
	}

	remaining := clampCount(count)
	var from int64
	switch v := so.GetRevisionOption().(type) {
	case *streams.ReadReq_Options_StreamOptions_Revision:
		if v.Revision > math.MaxInt64 {
			from = math.MaxInt64
		} else {
			from = int64(v.Revision)
		}
	case *streams.ReadReq_Options_StreamOptions_End:
		from = math.MaxInt64
	default:
		from = 0 // backwards from Start reads revision 0 only
	}
	if !backwards && from < low {
		from = low
	}
	for remaining > 0 {
		limit := min(remaining, pageSize)
		var page []encodedEvent
		var err error
		if backwards {
			page, err = h.st.readEncoded(ctx, nil, uuidString, "WHERE stream = ? AND revision <= ? AND revision >= ? AND position <= ? AND created >= ? ORDER BY revision DESC LIMIT ?",
				name, from, low, int64(committed), minCreated, limit)
		} else {
			page, err = h.st.readEncoded(ctx, nil, uuidString, "WHERE stream = ? AND revision >= ? AND position <= ? AND created >= ? ORDER BY revision LIMIT ?",
				name, from, int64(committed), minCreated, limit)
		}
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		for i := range page {
			if err := srv.SendMsg(&page[i]); err != nil {
				return err
			}
		}
		remaining -= int64(len(page))
		if int64(len(page)) < limit {
			return nil
		}
		last := page[len(page)-1].rev
		if backwards {
			if last <= low {
				return nil
			}
			from = last - 1
		} else {
			from = last + 1
		}
	}
	return nil
}

func (h *streamsService) readAll(srv streams.Streams_ReadServer, ao *streams.ReadReq_Options_AllOptions, backwards bool, count uint64, f *filter, uuidString bool) error {
	ctx := srv.Context()
	committed, _ := h.st.snapshot()
	// Forwards from P is inclusive, backwards from P exclusive (as the real
	// server); cursor holds the first/last position still to be read.
	var cursor uint64
	switch v := ao.GetAllOption().(type) {
	case *streams.ReadReq_Options_AllOptions_Position:
		cursor = v.Position.GetCommitPosition()
		if backwards {
			if cursor == 0 {
				return nil
			}
			cursor--
		}
	case *streams.ReadReq_Options_AllOptions_End:
		if !backwards {
			return nil
		}
		cursor = committed
	default:
		if backwards {
			return nil
		}
		cursor = 0
	}
	if cursor > committed && backwards {
		cursor = committed
	}
	if cursor > math.MaxInt64 {
		cursor = math.MaxInt64
	}
	remaining := clampCount(count)
	if remaining == 0 {
		return nil
	}
	if !backwards {
		maxRows := int64(math.MaxInt64)
		if f == nil {
			maxRows = remaining // scan no more rows than wanted
		}
		sc := h.st.scanAhead(ctx, f, uuidString, int64(cursor)-1, committed, maxRows)
		defer sc.close()
		for page := range sc.pages {
			if done, err := sendMatching(srv, page, &remaining); done || err != nil {
				return err
			}
		}
		if sc.err != nil {
			return status.Error(codes.Internal, sc.err.Error())
		}
		return nil
	}
	for remaining > 0 {
		page, err := h.st.readEncoded(ctx, f, uuidString, "WHERE position <= ? ORDER BY position DESC LIMIT ?", int64(cursor), pageSize)
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		if done, err := sendMatching(srv, page, &remaining); done || err != nil {
			return err
		}
		if len(page) < pageSize {
			return nil
		}
		last := page[len(page)-1].pos
		if last <= 1 {
			return nil
		}
		cursor = last - 1
	}
	return nil
}

// sendMatching sends the events of page that passed the filter (those
// with a message), at most *remaining of them, and reports whether the
// last one wanted was sent.
func sendMatching(srv streams.Streams_ReadServer, page []encodedEvent, remaining *int64) (bool, error) {
	for i := range page {
		if page[i].msg == nil {
			continue
		}
		if err := srv.SendMsg(&page[i]); err != nil {
			return true, err
		}
		if *remaining--; *remaining == 0 {
			return true, nil
		}
	}
	return false, nil
}

// scanner reads the log ahead of a sender (see scanAhead).
type scanner struct {
	pages  chan []encodedEvent // closed after the last page or on error
	err    error               // set before pages is closed
	cancel context.CancelFunc
}

// scanAhead reads committed events with after < position <= upTo, at most
// maxRows rows, on a goroutine of its own that stays one page ahead of the
// caller: the SQLite read of the next page overlaps the sends of this one,
// and no read transaction stays open while the client is slow. The caller
// must call close.
func (st *store) scanAhead(ctx context.Context, f *filter, uuidString bool, after int64, upTo uint64, maxRows int64) *scanner {
	ctx, cancel := context.WithCancel(ctx)
	sc := &scanner{pages: make(chan []encodedEvent, 1), cancel: cancel}
	go func() {
		defer close(sc.pages)
		for maxRows > 0 && after < int64(upTo) {
			limit := min(maxRows, allPageSize)
			page, err := st.readEncoded(ctx, f, uuidString, "WHERE position > ? AND position <= ? ORDER BY position LIMIT ?", after, int64(upTo), limit)
			if err != nil {
				sc.err = err
				return
			}
			if len(page) == 0 {
				return
			}
			select {
			case sc.pages <- page:
			case <-ctx.Done():
				return
			}
			if int64(len(page)) < limit {
				return
			}
			maxRows -= int64(len(page))
			after = int64(page[len(page)-1].pos)
		}
	}()
	return sc
}

// close stops the read-ahead and waits for its goroutine.
func (sc *scanner) close() {
	sc.cancel()
	for range sc.pages {
	}
}

func confirm(srv streams.Streams_ReadServer) error {
	return srv.Send(&streams.ReadResp{Content: &streams.ReadResp_Confirmation{Confirmation: &streams.ReadResp_SubscriptionConfirmation{
		SubscriptionId: uuid.NewString(),
	}}})
}

var caughtUpResp = &streams.ReadResp{Content: &streams.ReadResp_CaughtUp_{CaughtUp: &streams.ReadResp_CaughtUp{}}}

// liveWait is the step both subscription loops take once they have sent
// everything committed: tell the client it has caught up (once), then
// wait for the next commit.
type liveWait struct {
	h        *streamsService
	srv      streams.Streams_ReadServer
	notify   <-chan struct{} // closed by the commit after the last snapshot
	caughtUp bool
}

// next sends caught_up the first time, blocks until the next commit, the
// end of the call or server shutdown, and returns the new committed
// position.
func (w *liveWait) next() (uint64, error) {
	if !w.caughtUp {
		w.caughtUp = true
		if err := w.srv.Send(caughtUpResp); err != nil {
			return 0, err
		}
	}
	ctx := w.srv.Context()
	select {
	case <-w.notify:
	case <-ctx.Done():
		return 0, status.FromContextError(ctx.Err()).Err()
	case <-w.h.srv.closing:
		return 0, status.Error(codes.Unavailable, "embedded store is shutting down")
	}
	var committed uint64
	committed, w.notify = w.h.st.snapshot()
	return committed, nil
}

// subscribeAll streams $all from an exclusive start: catch-up reads, one
// caught_up, then live reads woken by commits. The cursor is the last scanned
// position, so catch-up and live can neither overlap nor leave a gap.
func (h *streamsService) subscribeAll(srv streams.Streams_ReadServer, ao *streams.ReadReq_Options_AllOptions, f *filter, uuidString bool) error {
	committed, notify := h.st.snapshot()
	var cursor uint64
	switch v := ao.GetAllOption().(type) {
	case *streams.ReadReq_Options_AllOptions_Position:
		cursor = v.Position.GetCommitPosition()
	case *streams.ReadReq_Options_AllOptions_End:
		cursor = committed
	}
	if err := confirm(srv); err != nil {
		return err
	}
	var scanned uint64
	// send delivers a page of scanned events, and checkpoints for a filter.
	send := func(page []encodedEvent) error {
		for i := range page {
			e := &page[i]
			cursor = e.pos
			if e.msg != nil {
				if err := srv.SendMsg(e); err != nil {
					return err
				}
			}
			if f != nil {
				if scanned++; scanned >= f.interval {
					scanned = 0
					if err := srv.Send(&streams.ReadResp{Content: &streams.ReadResp_Checkpoint_{Checkpoint: &streams.ReadResp_Checkpoint{
						CommitPosition: e.pos, PreparePosition: e.pos,
					}}}); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	wait := liveWait{h: h, srv: srv, notify: notify}
	for {
		if cursor >= committed {
			var err error
			if committed, err = wait.next(); err != nil {
				return err
			}
			continue
		}
		recs, ok := h.st.fromTail(cursor, committed, pageSize)
		if !ok {
			// Catch up from SQLite up to committed, reading ahead.
			if err := h.catchUpAll(srv, f, uuidString, cursor, committed, send); err != nil {
				return err
			}
			cursor = committed
			continue
		}
		if len(recs) == 0 {
			cursor = committed
			continue
		}
		page := make([]encodedEvent, len(recs))
		for i := range recs {
			if r := &recs[i]; f.match(r) {
				page[i] = encodeRecord(r, uuidString)
			} else {
				page[i] = encodedEvent{pos: r.pos, rev: r.rev}
			}
		}
		if err := send(page); err != nil {
			return err
		}
	}
}

// catchUpAll sends every event with after < position <= upTo from SQLite.
func (h *streamsService) catchUpAll(srv streams.Streams_ReadServer, f *filter, uuidString bool, after, upTo uint64, send func([]encodedEvent) error) error {
	sc := h.st.scanAhead(srv.Context(), f, uuidString, int64(after), upTo, math.MaxInt64)
	defer sc.close()
	for page := range sc.pages {
		if err := send(page); err != nil {
			return err
		}
	}
	if sc.err != nil {
		return status.Error(codes.Internal, sc.err.Error())
	}
	return nil
}

// subscribeStream streams one stream from an exclusive revision.
func (h *streamsService) subscribeStream(srv streams.Streams_ReadServer, name string, so *streams.ReadReq_Options_StreamOptions, uuidString bool) error {
	ctx := srv.Context()
	committed, notify := h.st.snapshot()
	_, state := h.st.view(name)
	after := int64(-1) // last revision already delivered or skipped
	switch v := so.GetRevisionOption().(type) {
	case *streams.ReadReq_Options_StreamOptions_Revision:
		if v.Revision >= math.MaxInt64 {
			after = math.MaxInt64
		} else {
			after = int64(v.Revision)
		}
	case *streams.ReadReq_Options_StreamOptions_End:
		if state != nil {
			after = state.lastRev
		}
	}
	if state != nil && state.tombstoned {
		return deletedError(ctx, name)
	}
	if err := confirm(srv); err != nil {
		return err
	}
	wait := liveWait{h: h, srv: srv, notify: notify}
	// Once live, every event of the stream up to position seen has been
	// delivered, so new commits can be scanned from the in-memory tail.
	live := false
	var seen uint64
	for {
		var page []encodedEvent
		more := false
		scanned, inMemory := []record(nil), false
		if live {
			scanned, inMemory = h.st.fromTail(seen, committed, pageSize)
		}
		if inMemory {
			for i := range scanned {
				if r := &scanned[i]; r.stream == name && r.rev > after {
					page = append(page, encodeRecord(r, uuidString))
				}
			}
			if len(scanned) > 0 {
				seen = scanned[len(scanned)-1].pos
			}
			more = len(scanned) == pageSize
		} else {
			var err error
			page, err = h.st.readEncoded(ctx, nil, uuidString, "WHERE stream = ? AND revision > ? AND position <= ? ORDER BY revision LIMIT ?", name, after, int64(committed), pageSize)
			if err != nil {
				return status.Error(codes.Internal, err.Error())
			}
			more = len(page) == pageSize
		}
		for i := range page {
			if page[i].rev == deletedRevision {
				return deletedError(ctx, name) // tombstoned while subscribed
			}
			if err := srv.SendMsg(&page[i]); err != nil {
				return err
			}
			after = page[i].rev
		}
		if more {
			continue
		}
		live, seen = true, committed
		var err error
		if committed, err = wait.next(); err != nil {
			return err
		}
	}
}
