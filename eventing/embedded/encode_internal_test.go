package embedded

import (
	"encoding/binary"
	"strconv"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// wantEventResp builds the message appendEvent encodes, field by field.
func wantEventResp(r *record, uuidString bool) *streams.ReadResp {
	contentType := r.contentType
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	id := &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits:  int64(binary.BigEndian.Uint64(r.id[:8])),
		LeastSignificantBits: int64(binary.BigEndian.Uint64(r.id[8:])),
	}}}
	if uuidString {
		id = &shared.UUID{Value: &shared.UUID_String_{String_: uuid.UUID(r.id).String()}}
	}
	return &streams.ReadResp{Content: &streams.ReadResp_Event{Event: &streams.ReadResp_ReadEvent{
		Event: &streams.ReadResp_ReadEvent_RecordedEvent{
			Id:               id,
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.stream)},
			StreamRevision:   uint64(r.rev),
			PreparePosition:  r.pos,
			CommitPosition:   r.pos,
			Metadata: map[string]string{
				"type":         r.typ,
				"content-type": contentType,
				"created":      strconv.FormatInt(r.created, 10),
			},
			CustomMetadata: r.meta,
			Data:           r.data,
		},
		Position: &streams.ReadResp_ReadEvent_CommitPosition{CommitPosition: r.pos},
	}}}
}

func TestAppendEventMatchesProto(t *testing.T) {
	big := make([]byte, 70_000)
	for i := range big {
		big[i] = byte(i)
	}
	recs := map[string]record{
		"typical": {pos: 1788, stream: "order-1", rev: 3, id: uuid.New(), typ: "OrderPlaced", contentType: "application/json",
			created: 17956515778385270, data: []byte(`{"a":1}`), meta: []byte(`{"m":1}`)},
		"zeros": {pos: 1, stream: "s", rev: 0, typ: "", contentType: "", created: 0, data: []byte{}, meta: []byte{}},
		"tombstone": {pos: 1 << 40, stream: "$$x", rev: deletedRevision, id: [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
			typ: "$streamDeleted", contentType: "application/octet-stream", created: -5},
		"large": {pos: 300, stream: string(big[:200]), rev: 1 << 33, id: uuid.New(), typ: "Big", contentType: "application/octet-stream",
			created: 1, data: big, meta: big[:300]},
	}
	for name, r := range recs {
		for _, asString := range []bool{false, true} {
			t.Run(name+"/string="+strconv.FormatBool(asString), func(t *testing.T) {
				e := encodeRecord(&r, asString)
				codec := encoding.GetCodecV2(grpcproto.Name)
				var got streams.ReadResp
				if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(e.msg)}, &got); err != nil {
					t.Fatalf("unmarshal: %v", err)
				}
				want := wantEventResp(&r, asString)
				if g, w := got.String(), want.String(); g != w {
					t.Fatalf("encoded\n%s\nwant\n%s", g, w)
				}
				wire, err := codec.Marshal(want)
				if err != nil {
					t.Fatal(err)
				}
				if n := wire.Len(); n != len(e.msg) {
					t.Errorf("encoded %d bytes, proto %d", len(e.msg), n)
				}
			})
		}
	}
}
