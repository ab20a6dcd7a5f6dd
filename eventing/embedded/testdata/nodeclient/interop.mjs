// Interop check of the embedded store with the official Node client
// (@eventstore/db-client). Run by nodeclient_test.go:
//
//   node interop.mjs <connection string> <stream prefix> <go event id> <go event type> <go event data JSON>
//
// The Go test has appended one event to <prefix>-go; this script reads it,
// appends, reads and subscribes (to $all with a stream-name filter and to a
// stream), exits non-zero on any mismatch and prints the IDs it appended as
// the last line: RESULT {"nodeIds": [...]}.
import { randomUUID } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import esdb from "@eventstore/db-client";

const { EventStoreDBClient, jsonEvent, NO_STREAM, START, END, FORWARDS, BACKWARDS, streamNameFilter } = esdb;

const [conn, prefix, goId, goType, goData] = process.argv.slice(2);
if (!goData) {
  console.error("usage: node interop.mjs <conn> <prefix> <go id> <go type> <go data JSON>");
  process.exit(2);
}

// A hard deadline instead of waiting forever on a subscription.
const deadline = setTimeout(() => fail("deadline of 30s exceeded"), 30_000);

function fail(msg) {
  console.error("interop mismatch:", msg);
  process.exit(1);
}

function expect(cond, msg) {
  if (!cond) fail(msg);
}

const client = EventStoreDBClient.connectionString(conn);
const goStream = `${prefix}-go`;
const nodeStream = `${prefix}-node`;

async function collect(iterable) {
  const out = [];
  for await (const resolved of iterable) out.push(resolved);
  return out;
}

// Takes n events from a subscription (an async iterator), keeping it open.
async function take(iterator, n) {
  const out = [];
  while (out.length < n) {
    const { value, done } = await iterator.next();
    if (done) fail(`subscription ended after ${out.length} of ${n} events`);
    out.push(value);
  }
  return out;
}

const placed = (n) =>
  jsonEvent({ id: randomUUID(), type: "NodeOrderPlaced", data: { orderId: `${prefix}-order`, n }, metadata: { by: "node" } });

// 1. Read what Go wrote.
{
  const [e, ...rest] = await collect(client.readStream(goStream, { fromRevision: START, direction: FORWARDS, maxCount: 10 }));
  expect(e && rest.length === 0, `read ${goStream}: want exactly one event`);
  const ev = e.event;
  expect(ev.id === goId, `go event id ${ev.id}, want ${goId}`);
  expect(ev.type === goType, `go event type ${ev.type}, want ${goType}`);
  expect(ev.isJson === true, "go event is not JSON");
  expect(isDeepStrictEqual(ev.data, JSON.parse(goData)), `go event data ${JSON.stringify(ev.data)}, want ${goData}`);
  expect(ev.revision === 0n, `go event revision ${ev.revision}`);
  expect(ev.streamId === goStream, `go event stream ${ev.streamId}`);
  expect(Math.abs(ev.created.getTime() - Date.now()) < 60_000, `go event created ${ev.created.toISOString()}`);
  expect(ev.position && ev.position.commit > 0n, `go event position ${JSON.stringify(ev.position, (_, v) => String(v))}`);
}

// 2. Append with optimistic concurrency.
const written = [placed(0), placed(1), placed(2), placed(3)];
{
  const r1 = await client.appendToStream(nodeStream, written.slice(0, 3), { expectedRevision: NO_STREAM });
  expect(r1.success && r1.nextExpectedRevision === 2n, `first append: next revision ${r1.nextExpectedRevision}`);
  expect(r1.position && r1.position.commit > 0n, "first append: no position");
  const r2 = await client.appendToStream(nodeStream, written[3], { expectedRevision: 2n });
  expect(r2.nextExpectedRevision === 3n, `second append: next revision ${r2.nextExpectedRevision}`);
  expect(r2.position.commit > r1.position.commit, "positions do not increase");
  try {
    await client.appendToStream(nodeStream, placed(99), { expectedRevision: NO_STREAM });
    fail("append with NO_STREAM to an existing stream succeeded");
  } catch (err) {
    expect(err?.type === "wrong-expected-version", `append with NO_STREAM: ${err}, want wrong-expected-version`);
  }
}

// 3. Read forwards and backwards; a missing stream.
{
  const fwd = await collect(client.readStream(nodeStream, { fromRevision: START, direction: FORWARDS, maxCount: 100 }));
  expect(fwd.length === 4, `read forwards: ${fwd.length} events, want 4`);
  fwd.forEach((r, i) => {
    expect(r.event.revision === BigInt(i), `read forwards: revision ${r.event.revision} at ${i}`);
    expect(r.event.id === written[i].id, `read forwards: id ${r.event.id} at ${i}`);
    expect(isDeepStrictEqual(r.event.data, written[i].data), `read forwards: data ${JSON.stringify(r.event.data)} at ${i}`);
    expect(isDeepStrictEqual(r.event.metadata, { by: "node" }), `read forwards: metadata ${JSON.stringify(r.event.metadata)}`);
  });
  const back = await collect(client.readStream(nodeStream, { fromRevision: END, direction: BACKWARDS, maxCount: 2 }));
  expect(back.map((r) => r.event.revision).join() === "3,2", `read backwards: revisions ${back.map((r) => r.event.revision)}`);
  try {
    await collect(client.readStream(`${prefix}-missing`, { fromRevision: START, maxCount: 1 }));
    fail("reading a missing stream succeeded");
  } catch (err) {
    expect(err?.type === "stream-not-found", `read missing stream: ${err}, want stream-not-found`);
  }
}

// 4. $all: our five events in order with increasing positions.
{
  const all = (await collect(client.readAll({ fromPosition: START, direction: FORWARDS, maxCount: 100_000 }))).filter((r) =>
    r.event?.streamId.startsWith(prefix),
  );
  expect(all.length === 5, `read $all: ${all.length} of our events, want 5`);
  for (let i = 1; i < all.length; i++) {
    expect(all[i].event.position.commit > all[i - 1].event.position.commit, "read $all: positions do not increase");
  }
}

// 5. Subscriptions: $all filtered by stream name, and one stream; catch-up then live.
{
  const allSub = client.subscribeToAll({ fromPosition: START, filter: streamNameFilter({ prefixes: [prefix] }) });
  let caughtUp = false;
  allSub.on("caughtUp", () => (caughtUp = true));
  const allIt = allSub[Symbol.asyncIterator]();
  const streamSub = client.subscribeToStream(nodeStream, { fromRevision: START });
  const streamIt = streamSub[Symbol.asyncIterator]();

  const caught = await take(allIt, 5);
  expect(
    caught.map((r) => r.event.id).join() === [goId, ...written.map((w) => w.id)].join(),
    `$all subscription catch-up: ${caught.map((r) => `${r.event.streamId}@${r.event.revision}`)}`,
  );
  const streamCaught = await take(streamIt, 4);
  expect(streamCaught.map((r) => r.event.revision).join() === "0,1,2,3", "stream subscription catch-up revisions");

  const live = placed(4);
  written.push(live);
  await client.appendToStream(nodeStream, live, { expectedRevision: 3n });
  const [la] = await take(allIt, 1);
  expect(la.event.id === live.id && la.event.revision === 4n, `$all subscription live event ${la.event.id}`);
  const [ls] = await take(streamIt, 1);
  expect(ls.event.id === live.id, `stream subscription live event ${ls.event.id}`);
  expect(caughtUp, "$all subscription never signalled caughtUp");
  await allSub.unsubscribe();
  await streamSub.unsubscribe();
}

clearTimeout(deadline);
await client.dispose();
console.log("RESULT " + JSON.stringify({ nodeIds: written.map((w) => w.id) }));
