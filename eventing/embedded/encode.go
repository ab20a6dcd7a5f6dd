package embedded

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// Read responses carrying events are the hot path of ReadAll and of
// catch-up subscriptions. Building a streams.ReadResp per event (nine
// allocations and a map) and marshalling it by reflection cost more than the
// SQLite read itself, so events are encoded straight from the row into the
// wire form of ReadResp{event: ReadEvent{event: RecordedEvent, commit_position}}
// and handed to gRPC as is by serverCodec. Every other message still goes
// through the proto codec.

// encodedEvent is one scanned event: its position and revision, and msg, the
// encoded ReadResp, or nil when a filter skipped the event.
type encodedEvent struct {
	pos uint64
	rev int64
	msg []byte
}

// serverCodec is the proto codec, except that it sends an *encodedEvent's
// bytes unchanged.
type serverCodec struct{ encoding.CodecV2 }

func newServerCodec() serverCodec { return serverCodec{encoding.GetCodecV2(grpcproto.Name)} }

// Marshal implements encoding.CodecV2. The bytes of an encodedEvent are
// referenced, not copied, until gRPC has written them: they must not change
// after the send.
func (c serverCodec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*encodedEvent); ok {
		return mem.BufferSlice{mem.SliceBuffer(e.msg)}, nil
	}
	return c.CodecV2.Marshal(v)
}

// Field numbers of the messages encoded here (streams.proto, shared.proto).
const (
	fReadRespEvent       = 1 // ReadResp.event
	fReadEventEvent      = 1 // ReadResp.ReadEvent.event
	fReadEventCommitPos  = 3 // ReadResp.ReadEvent.commit_position
	fRecID               = 1 // RecordedEvent.id
	fRecStream           = 2 // RecordedEvent.stream_identifier
	fRecRevision         = 3
	fRecPrepare          = 4
	fRecCommit           = 5
	fRecMetadata         = 6 // map<string, string>
	fRecCustomMetadata   = 7
	fRecData             = 8
	fUUIDStructured      = 1
	fUUIDString          = 2
	fStructuredMost      = 1
	fStructuredLeast     = 2
	fStreamIdentName     = 3
	fMapKey, fMapValue   = 1, 2
	defaultContentType   = "application/octet-stream"
	uuidStringLen        = 36
	maxTicksDecimalBytes = 20
)

// eventFields are the stored columns of one event; S is string for records
// held in memory and []byte for rows scanned from SQLite.
type eventFields[S ~string | ~[]byte] struct {
	pos         uint64
	rev         int64
	id          []byte // 16 bytes
	stream      S
	typ         S
	contentType S
	created     int64
	data, meta  []byte
}

// The wire format comes from protowire; every field number here is below
// 16, so a tag is one byte.

func appendTag(b []byte, num byte, typ protowire.Type) []byte {
	return protowire.AppendTag(b, protowire.Number(num), typ)
}

func sizeBytesField(n int) int { return 1 + protowire.SizeBytes(n) }

func sizeVarintField(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

func appendBytesField[S ~string | ~[]byte](b []byte, num byte, v S) []byte {
	b = appendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendVarintField(b []byte, num byte, v uint64) []byte {
	if v == 0 {
		return b // proto3 leaves zero scalars out
	}
	b = appendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendMapEntry[S ~string | ~[]byte](b []byte, key string, val S) []byte {
	b = appendTag(b, fRecMetadata, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeBytesField(len(key))+sizeBytesField(len(val))))
	b = appendBytesField(b, fMapKey, key)
	return appendBytesField(b, fMapValue, val)
}

func sizeMapEntry(k, v int) int { return sizeBytesField(sizeBytesField(k) + sizeBytesField(v)) }

// appendEvent appends e encoded as a ReadResp event, with the id structured
// or as a string as the client asked. The "created" metadata is ticks
// (100 ns) since the Unix epoch, as a decimal string.
func appendEvent[S ~string | ~[]byte](b []byte, e *eventFields[S], uuidString bool) []byte {
	var ticksBuf [maxTicksDecimalBytes]byte
	ticks := strconv.AppendInt(ticksBuf[:0], e.created, 10)
	ctLen := len(e.contentType)
	if ctLen == 0 {
		ctLen = len(defaultContentType)
	}
	most := binary.BigEndian.Uint64(e.id[:8])
	least := binary.BigEndian.Uint64(e.id[8:16])

	var idLen int
	if uuidString {
		idLen = sizeBytesField(uuidStringLen)
	} else {
		idLen = sizeBytesField(sizeVarintField(most) + sizeVarintField(least))
	}
	rec := sizeBytesField(idLen) +
		sizeBytesField(sizeBytesField(len(e.stream))) +
		sizeVarintField(uint64(e.rev)) + sizeVarintField(e.pos) + sizeVarintField(e.pos) +
		sizeMapEntry(len("type"), len(e.typ)) +
		sizeMapEntry(len("content-type"), ctLen) +
		sizeMapEntry(len("created"), len(ticks))
	if len(e.meta) > 0 {
		rec += sizeBytesField(len(e.meta))
	}
	if len(e.data) > 0 {
		rec += sizeBytesField(len(e.data))
	}
	readEvent := sizeBytesField(rec) + sizeVarintField(e.pos)

	b = appendTag(b, fReadRespEvent, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(readEvent))
	b = appendTag(b, fReadEventEvent, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(rec))

	b = appendTag(b, fRecID, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(idLen))
	if uuidString {
		b = appendTag(b, fUUIDString, protowire.BytesType)
		b = protowire.AppendVarint(b, uuidStringLen)
		b = appendUUIDString(b, e.id)
	} else {
		b = appendTag(b, fUUIDStructured, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeVarintField(most)+sizeVarintField(least)))
		b = appendVarintField(b, fStructuredMost, most)
		b = appendVarintField(b, fStructuredLeast, least)
	}
	b = appendTag(b, fRecStream, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeBytesField(len(e.stream))))
	b = appendBytesField(b, fStreamIdentName, e.stream)
	b = appendVarintField(b, fRecRevision, uint64(e.rev))
	b = appendVarintField(b, fRecPrepare, e.pos)
	b = appendVarintField(b, fRecCommit, e.pos)
	b = appendMapEntry(b, "type", e.typ)
	if len(e.contentType) == 0 {
		b = appendMapEntry(b, "content-type", defaultContentType)
	} else {
		b = appendMapEntry(b, "content-type", e.contentType)
	}
	b = appendMapEntry(b, "created", ticks)
	if len(e.meta) > 0 {
		b = appendBytesField(b, fRecCustomMetadata, e.meta)
	}
	if len(e.data) > 0 {
		b = appendBytesField(b, fRecData, e.data)
	}
	return appendVarintField(b, fReadEventCommitPos, e.pos)
}

// encodeRecord encodes an in-memory record as a ReadResp event.
func encodeRecord(r *record, uuidString bool) encodedEvent {
	e := eventFields[string]{pos: r.pos, rev: r.rev, id: r.id[:], stream: r.stream, typ: r.typ,
		contentType: r.contentType, created: r.created, data: r.data, meta: r.meta}
	return encodedEvent{pos: r.pos, rev: r.rev, msg: appendEvent(make([]byte, 0, 160+len(r.stream)+len(r.data)+len(r.meta)), &e, uuidString)}
}

// appendUUIDString appends id in the canonical 8-4-4-4-12 lower-case form,
// as uuid.UUID.String does, without allocating.
func appendUUIDString(b []byte, id []byte) []byte {
	for i, group := range [][2]int{{0, 4}, {4, 6}, {6, 8}, {8, 10}, {10, 16}} {
		if i > 0 {
			b = append(b, '-')
		}
		b = hex.AppendEncode(b, id[group[0]:group[1]])
	}
	return b
}
