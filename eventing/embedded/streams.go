package embedded

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// streamsService implements event_store.client.streams.Streams.
type streamsService struct {
	streams.UnimplementedStreamsServer
	srv *Server
	st  *store
}

func newEventID() [16]byte { return uuid.New() }

func uuidProto(id [16]byte, asString bool) *shared.UUID {
	if asString {
		return &shared.UUID{Value: &shared.UUID_String_{String_: uuid.UUID(id).String()}}
	}
	return &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits:  int64(binary.BigEndian.Uint64(id[:8])),
		LeastSignificantBits: int64(binary.BigEndian.Uint64(id[8:])),
	}}}
}

func uuidFromProto(u *shared.UUID) ([16]byte, error) {
	var id [16]byte
	switch v := u.GetValue().(type) {
	case *shared.UUID_Structured_:
		binary.BigEndian.PutUint64(id[:8], uint64(v.Structured.GetMostSignificantBits()))
		binary.BigEndian.PutUint64(id[8:], uint64(v.Structured.GetLeastSignificantBits()))
		return id, nil
	case *shared.UUID_String_:
		p, err := uuid.Parse(v.String_)
		if err != nil {
			return id, fmt.Errorf("event id %q: %w", v.String_, err)
		}
		return p, nil
	default:
		return id, errors.New("event id is missing")
	}
}

// streamError builds a status carrying the trailers the client inspects.
func streamError(ctx context.Context, c codes.Code, msg string, kv ...string) error {
	if len(kv) > 0 {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(kv...))
	}
	return status.Error(c, msg)
}

func deletedError(ctx context.Context, stream string) error {
	return streamError(ctx, codes.FailedPrecondition, fmt.Sprintf("Event stream '%s' is deleted.", stream),
		"exception", "stream-deleted", "stream-name", stream)
}

func writeFailure(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, errStopped):
		return status.Error(codes.Unavailable, err.Error())
	default:
		return status.Errorf(codes.Internal, "write failed: %v", err)
	}
}

// Append implements the client-streaming append.
func (h *streamsService) Append(srv streams.Streams_AppendServer) error {
	ctx := srv.Context()
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	opts := first.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "the first append message must carry options")
	}
	stream := string(opts.GetStreamIdentifier().GetStreamName())
	if stream == "" {
		return status.Error(codes.InvalidArgument, "stream name is required")
	}
	var expect expectation
	switch v := opts.GetExpectedStreamRevision().(type) {
	case *streams.AppendReq_Options_Revision:
		expect = expectation{kind: expectRevision, rev: v.Revision}
	case *streams.AppendReq_Options_NoStream:
		expect.kind = expectNoStream
	case *streams.AppendReq_Options_StreamExists:
		expect.kind = expectExists
	default:
		expect.kind = expectAny
	}

	var events []proposed
	var failure error
	size := 0
	for {
		msg, err := srv.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if failure != nil {
			continue // drain so the client reads our status, not a broken pipe
		}
		pm := msg.GetProposedMessage()
		if pm == nil {
			failure = status.Error(codes.InvalidArgument, "expected a proposed message")
			continue
		}
		size += len(pm.GetData()) + len(pm.GetCustomMetadata())
		if size > h.srv.cfg.MaxAppendSize {
			n := strconv.Itoa(h.srv.cfg.MaxAppendSize)
			failure = streamError(ctx, codes.InvalidArgument, "Maximum Append Size of "+n+" Exceeded.",
				"exception", "maximum-append-size-exceeded", "maximum-append-size", n)
			events = nil
			continue
		}
		md := pm.GetMetadata()
		typ, okType := md["type"]
		ct, okCT := md["content-type"]
		if !okType || !okCT {
			missing := "type"
			if okType {
				missing = "content-type"
			}
			failure = streamError(ctx, codes.InvalidArgument, "Required Metadata Property '"+missing+"' is missing",
				"exception", "missing-required-metadata-property", "required-properties", "type,content-type")
			continue
		}
		id, err := uuidFromProto(pm.GetId())
		if err != nil {
			failure = status.Error(codes.InvalidArgument, err.Error())
			continue
		}
		data, meta := pm.GetData(), pm.GetCustomMetadata()
		if data == nil {
			data = []byte{}
		}
		if meta == nil {
			meta = []byte{}
		}
		events = append(events, proposed{id: id, typ: typ, contentType: ct, data: data, meta: meta})
	}
	if failure != nil {
		return failure
	}

	res := h.st.submit(ctx, &writeReq{op: opAppend, stream: stream, expect: expect, events: events})
	if res.err != nil {
		return writeFailure(ctx, res.err)
	}
	switch res.outcome {
	case outcomeDeleted:
		return deletedError(ctx, stream)
	case outcomeWrongVersion:
		return srv.SendAndClose(&streams.AppendResp{Result: &streams.AppendResp_WrongExpectedVersion_{
			WrongExpectedVersion: wrongVersionProto(expect, res.rev),
		}})
	}
	ok := &streams.AppendResp_Success{}
	if res.rev < 0 {
		ok.CurrentRevisionOption = &streams.AppendResp_Success_NoStream{NoStream: &shared.Empty{}}
	} else {
		ok.CurrentRevisionOption = &streams.AppendResp_Success_CurrentRevision{CurrentRevision: uint64(res.rev)}
	}
	if res.pos > 0 {
		ok.PositionOption = &streams.AppendResp_Success_Position{Position: &streams.AppendResp_Position{
			CommitPosition: res.pos, PreparePosition: res.pos,
		}}
	} else {
		ok.PositionOption = &streams.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}}
	}
	return srv.SendAndClose(&streams.AppendResp{Result: &streams.AppendResp_Success_{Success: ok}})
}

// wrongVersionProto fills both the current and the legacy 20.6.0 fields, as
// the real server does.
func wrongVersionProto(expect expectation, cur int64) *streams.AppendResp_WrongExpectedVersion {
	w := &streams.AppendResp_WrongExpectedVersion{}
	if cur < 0 {
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_NoStream_20_6_0{NoStream_20_6_0: &shared.Empty{}}
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
	} else {
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_CurrentRevision_20_6_0{CurrentRevision_20_6_0: uint64(cur)}
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(cur)}
	}
	switch expect.kind {
	case expectAny:
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_Any_20_6_0{Any_20_6_0: &shared.Empty{}}
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: &shared.Empty{}}
	case expectExists:
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_StreamExists_20_6_0{StreamExists_20_6_0: &shared.Empty{}}
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: &shared.Empty{}}
	case expectNoStream:
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: ^uint64(0)}
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: &shared.Empty{}}
	default:
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: expect.rev}
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: expect.rev}
	}
	return w
}

func deleteExpectation(v any) expectation {
	switch v := v.(type) {
	case *streams.DeleteReq_Options_Revision:
		return expectation{kind: expectRevision, rev: v.Revision}
	case *streams.TombstoneReq_Options_Revision:
		return expectation{kind: expectRevision, rev: v.Revision}
	case *streams.DeleteReq_Options_NoStream, *streams.TombstoneReq_Options_NoStream:
		return expectation{kind: expectNoStream}
	case *streams.DeleteReq_Options_StreamExists, *streams.TombstoneReq_Options_StreamExists:
		return expectation{kind: expectExists}
	default:
		return expectation{kind: expectAny}
	}
}

// deleteLike runs a Delete or Tombstone and returns the position written.
func (h *streamsService) deleteLike(ctx context.Context, op writeOp, stream string, expect expectation) (uint64, error) {
	if stream == "" {
		return 0, status.Error(codes.InvalidArgument, "stream name is required")
	}
	res := h.st.submit(ctx, &writeReq{op: op, stream: stream, expect: expect})
	if res.err != nil {
		return 0, writeFailure(ctx, res.err)
	}
	switch res.outcome {
	case outcomeDeleted:
		return 0, deletedError(ctx, stream)
	case outcomeWrongVersion:
		return 0, streamError(ctx, codes.FailedPrecondition,
			fmt.Sprintf("Append failed due to WrongExpectedVersion. Stream: %s, Expected version: %s, Actual version: %d", stream, expect.legacyCode(), res.rev),
			"exception", "wrong-expected-version", "stream-name", stream,
			"expected-version", expect.legacyCode(), "actual-version", strconv.FormatInt(res.rev, 10))
	}
	return res.pos, nil
}

// Delete soft-deletes a stream by setting $tb to the maximum revision.
func (h *streamsService) Delete(ctx context.Context, req *streams.DeleteReq) (*streams.DeleteResp, error) {
	o := req.GetOptions()
	pos, err := h.deleteLike(ctx, opDelete, string(o.GetStreamIdentifier().GetStreamName()), deleteExpectation(o.GetExpectedStreamRevision()))
	if err != nil {
		return nil, err
	}
	// The client dereferences the position unconditionally: always send one.
	return &streams.DeleteResp{PositionOption: &streams.DeleteResp_Position_{Position: &streams.DeleteResp_Position{
		CommitPosition: pos, PreparePosition: pos,
	}}}, nil
}

// Tombstone hard-deletes a stream with a $streamDeleted event.
func (h *streamsService) Tombstone(ctx context.Context, req *streams.TombstoneReq) (*streams.TombstoneResp, error) {
	o := req.GetOptions()
	pos, err := h.deleteLike(ctx, opTombstone, string(o.GetStreamIdentifier().GetStreamName()), deleteExpectation(o.GetExpectedStreamRevision()))
	if err != nil {
		return nil, err
	}
	return &streams.TombstoneResp{PositionOption: &streams.TombstoneResp_Position_{Position: &streams.TombstoneResp_Position{
		CommitPosition: pos, PreparePosition: pos,
	}}}, nil
}

// BatchAppend is not offered (and not advertised in server features).
func (h *streamsService) BatchAppend(streams.Streams_BatchAppendServer) error {
	return status.Error(codes.Unimplemented, "embedded store does not support batch append; use Append")
}
