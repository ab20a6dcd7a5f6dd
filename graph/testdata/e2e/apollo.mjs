// apollo.mjs drives the ordertrail GraphQL API with Apollo Client 4: HTTP for
// queries and mutations, graphql-ws (the graphql-transport-ws subprotocol)
// for subscriptions. It walks an order through its whole lifecycle and checks
// payloads, the read model, history, subscriptions (live and resumed),
// retries and input errors.
//
// Usage: node apollo.mjs http://127.0.0.1:PORT
// Exits 0 when every assertion holds; otherwise prints the failed assertion
// and exits 1.
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { isSubscriptionOperation } from "@apollo/client/utilities";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { AssertionFailed, eq, fail, follow, graphQLErrors, ok, runScript, serviceURL, step } from "./check.mjs";

const base = serviceURL("apollo.mjs");
const httpURL = `${base}/graphql`;
const wsURL = httpURL.replace(/^http/, "ws");
const runID = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

const big = (p) => BigInt(p);

// ---------- client ----------

let connected;
const wsConnected = new Promise((resolve) => (connected = resolve));
const wsClient = createClient({
  url: wsURL,
  webSocketImpl: WebSocket,
  retryAttempts: 0,
  on: { connected: (socket) => connected(socket.protocol) },
});

const client = new ApolloClient({
  cache: new InMemoryCache(),
  link: ApolloLink.split(
    ({ query }) => isSubscriptionOperation(query),
    new GraphQLWsLink(wsClient),
    new HttpLink({ uri: httpURL }),
  ),
  defaultOptions: {
    query: { fetchPolicy: "no-cache", errorPolicy: "all" },
    mutate: { fetchPolicy: "no-cache", errorPolicy: "all" },
  },
});

function describe(result) {
  return JSON.stringify({ data: result.data, errors: graphQLErrors(result.error) });
}

/** Runs a query or mutation and returns its data; any error fails. */
async function run(kind, doc, variables, what) {
  const result =
    kind === "query"
      ? await client.query({ query: doc, variables })
      : await client.mutate({ mutation: doc, variables });
  const errs = graphQLErrors(result.error);
  if (errs.length) fail(`${what}: unexpected errors ${JSON.stringify(errs)}`);
  ok(result.data, `${what}: no data`);
  return result.data;
}

/** Reads a customer; an unknown customer (NOT_FOUND) is null. */
async function customerOrNull(id) {
  const result = await client.query({ query: CUSTOMER, variables: { id } });
  const errs = graphQLErrors(result.error);
  if (errs.length === 1 && errs[0].extensions?.code === "NOT_FOUND") return null;
  if (errs.length) fail(`customer(${id}) before: unexpected errors ${JSON.stringify(errs)}`);
  return result.data.customer;
}

/** Runs an operation that must fail with extensions.code and a message matching msg. */
async function expectError(kind, doc, variables, code, msg, what) {
  const result =
    kind === "query"
      ? await client.query({ query: doc, variables })
      : await client.mutate({ mutation: doc, variables });
  const errs = graphQLErrors(result.error);
  if (!errs.length) fail(`${what}: expected an error with extensions.code ${code}, got ${describe(result)}`);
  const e = errs.find((e) => e.extensions?.code === code);
  if (!e) fail(`${what}: expected extensions.code ${code}, got errors ${JSON.stringify(errs)}`);
  ok(msg.test(e.message), `${what}: message ${JSON.stringify(e.message)} does not match ${msg}`);
  return e;
}

/** Subscribes and queues the results so they can be awaited one by one. */
function subscribe(doc, variables, label) {
  return follow(client.subscribe({ query: doc, variables }), label);
}

// ---------- operations ----------

const ORDER_CHANGED = gql`
  subscription OrderChanged($orderId: ID, $customerId: ID, $fromPosition: Position) {
    orderChanged(orderId: $orderId, customerId: $customerId, fromPosition: $fromPosition) {
      order { id status }
      eventType
      revision
      position
    }
  }
`;

const PAYLOAD = `
  order { id status total { amount currency } version lastPosition }
  events { type revision position }
  position
`;

const CREATE = gql`
  mutation Create($input: CreateOrderInput!) {
    createOrder(input: $input) { ${PAYLOAD} }
  }
`;
const ADD_ITEM = gql`mutation AddItem($input: AddOrderItemInput!) { addOrderItem(input: $input) { ${PAYLOAD} } }`;
const CHANGE_QTY = gql`mutation ChangeQty($input: ChangeOrderItemQuantityInput!) { changeOrderItemQuantity(input: $input) { ${PAYLOAD} } }`;
const REMOVE_ITEM = gql`mutation RemoveItem($input: RemoveOrderItemInput!) { removeOrderItem(input: $input) { ${PAYLOAD} } }`;
const CONFIRM = gql`mutation Confirm($input: OrderCommandInput!) { confirmOrder(input: $input) { ${PAYLOAD} } }`;
const PAY = gql`mutation Pay($input: MarkOrderPaidInput!) { markOrderPaid(input: $input) { ${PAYLOAD} } }`;
const SHIP = gql`mutation Ship($input: ShipOrderInput!) { shipOrder(input: $input) { ${PAYLOAD} } }`;
const DELIVER = gql`mutation Deliver($input: OrderCommandInput!) { deliverOrder(input: $input) { ${PAYLOAD} } }`;
const CANCEL = gql`mutation Cancel($input: CancelOrderInput!) { cancelOrder(input: $input) { ${PAYLOAD} } }`;
const CORRECT = gql`mutation Correct($input: CorrectOrderAmountInput!) { correctOrderAmount(input: $input) { ${PAYLOAD} } }`;

const ORDER = gql`
  query Order($id: ID!, $minPosition: Position) {
    order(id: $id, minPosition: $minPosition) {
      id customerId status total { amount currency } items { sku quantity unitPrice } createdAt version
      lastPosition carrier trackingReference confirmedAt paidAt shippedAt deliveredAt cancelledAt cancelReason
      corrections { correctedRevision oldAmount { amount currency } newAmount { amount currency } reason correctedAt }
    }
  }
`;
const ORDERS = gql`
  query Orders($minPosition: Position) {
    orders(first: 10, minPosition: $minPosition) {
      edges { node { id } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;
const HISTORY = gql`
  query History($id: ID!) {
    order(id: $id) {
      id
      history { type revision position eventId recordedAt commandId }
      asOf(revision: 0) { id customerId status total { amount currency } items { sku quantity unitPrice } version }
    }
  }
`;
const CUSTOMER = gql`
  query Customer($id: ID!, $minPosition: Position) {
    customer(id: $id, minPosition: $minPosition) {
      id orderCount openOrders lifetimeValue { amount currency } firstOrderAt lastOrderAt
      orders(first: 100) { edges { node { id } } }
    }
  }
`;
const TRENDS = gql`
  query Trends($from: Time!, $to: Time!, $minPosition: Position) {
    orderTrends(from: $from, to: $to, bucket: HOUR, currency: "USD", minPosition: $minPosition) {
      bucket bucketStart currency ordersCreated ordersConfirmed ordersShipped ordersCancelled
      revenue { amount currency }
      averageOrderValue { amount currency }
    }
  }
`;
const STATUS = gql`
  query Status {
    projectionStatus { projection state checkpoint head lag connected caughtUp haltedAt error deadLetters }
  }
`;

// Decimal strings with two fraction digits <-> cents, exactly.
const cents = (s) => {
  const m = /^(-?)(\d+)\.(\d{2})$/.exec(s);
  ok(m, `amount ${JSON.stringify(s)} is not a decimal with two fraction digits`);
  return (m[1] ? -1 : 1) * (Number(m[2]) * 100 + Number(m[3]));
};
const usd = (list) => cents(list.find((m) => m.currency === "USD")?.amount ?? "0.00");

/** Checks a mutation payload: status, total, version, and the events it appended. */
function checkPayload(p, { what, status, total, version, types }) {
  ok(p.order, `${what}: payload.order is null`, p);
  eq(p.order.status, status, `${what}: status`);
  eq(p.order.total, { __typename: "Money", amount: total, currency: "USD" }, `${what}: total`);
  eq(p.order.version, version, `${what}: version`);
  eq(p.events.map((e) => e.type), types, `${what}: events[].type`);
  eq(p.events.at(-1).position, p.position, `${what}: position is the last event's`);
  eq(p.events.at(-1).revision, version - 1, `${what}: last event's revision`);
  eq(p.order.lastPosition, p.position, `${what}: order.lastPosition`);
}

// ---------- the test ----------

async function main() {
  const hourStart = new Date();
  hourStart.setUTCMinutes(0, 0, 0);
  const trendsRange = () => ({ from: hourStart.toISOString(), to: new Date(Date.now() + 3_600_000).toISOString() });

  // Baselines, so the script also works against a store that has data.
  const before = {
    customer: await customerOrNull("c-1"),
    trends: (await run("query", TRENDS, trendsRange(), "orderTrends before")).orderTrends,
  };
  step("baselines");

  // Subscribe first; the create below must arrive live.
  const live = subscribe(ORDER_CHANGED, {}, "orderChanged (live)");
  const protocol = await Promise.race([
    wsConnected,
    new Promise((_, reject) => setTimeout(() => reject(new AssertionFailed("websocket: no connection_ack within 10 s")), 10_000)),
  ]);
  eq(protocol, "graphql-transport-ws", "websocket subprotocol");
  // graphql-transport-ws has no acknowledgement for "subscribe"; give the
  // server a moment to run the resolver before the mutation commits.
  await new Promise((r) => setTimeout(r, 500));
  step(`subscribed to orderChanged over ${protocol}`);

  // ----- order 1: the full lifecycle -----
  const created = (
    await run("mutate", CREATE, {
      input: { customerId: "c-1", currency: "USD", items: [{ sku: "A-1", quantity: 2, unitPrice: "12.50" }] },
    }, "createOrder")
  ).createOrder;
  checkPayload(created, { what: "createOrder", status: "OPEN", total: "25.00", version: 1, types: ["OrderCreated"] });
  const id = created.order.id;
  ok(typeof id === "string" && id.length > 0, "createOrder: order.id is empty", created.order);
  ok(/^\d+$/.test(created.position), "createOrder: position is not a decimal string", created.position);
  const positions = [created.position]; // order 1's event positions, by revision
  step(`createOrder ${id} at ${created.position}`);

  const o = (await run("query", ORDER, { id, minPosition: created.position }, "order(id, minPosition)")).order;
  ok(o, `order(id: ${id}, minPosition: ${created.position}) returned null`);
  eq(o.id, id, "order.id");
  eq(o.customerId, "c-1", "order.customerId");
  eq(o.status, "OPEN", "order.status");
  eq(o.total, { __typename: "Money", amount: "25.00", currency: "USD" }, "order.total");
  eq(o.items, [{ __typename: "OrderItem", sku: "A-1", quantity: 2, unitPrice: "12.50" }], "order.items");
  eq(o.version, 1, "order.version");
  eq(o.lastPosition, created.position, "order.lastPosition");
  const createdAt = Date.parse(o.createdAt);
  ok(Number.isFinite(createdAt) && Math.abs(Date.now() - createdAt) < 5 * 60_000, "order.createdAt is not a recent RFC 3339 time", o.createdAt);
  step("order(id, minPosition)");

  const list = (await run("query", ORDERS, { minPosition: created.position }, "orders(first: 10)")).orders;
  ok(list.edges.some((e) => e.node.id === id), `orders(first: 10) does not contain ${id}`, list.edges.map((e) => e.node.id));
  ok(list.edges.length <= 10, "orders(first: 10) returned more than 10 edges", list.edges.length);
  eq(list.edges[0].node.id, id, "orders(first: 10): newest order first");
  ok(typeof list.pageInfo.hasNextPage === "boolean", "orders.pageInfo.hasNextPage is not a boolean", list.pageInfo);
  ok(!list.pageInfo.hasNextPage || list.pageInfo.endCursor, "orders.pageInfo: hasNextPage without endCursor", list.pageInfo);
  step("orders(first: 10)");

  // Other writers may be active; skip changes of other orders. If this
  // times out while later changes of the order do arrive, the server started
  // the subscription after the write (see the settle delay above).
  const what = `OrderCreated of ${id} (a live subscription started before the write)`;
  let change = await live.next(what);
  while (change.orderChanged.order.id !== id) change = await live.next(what);
  eq(change.orderChanged.eventType, "OrderCreated", "live orderChanged.eventType");
  eq(change.orderChanged.position, created.position, "live orderChanged.position equals createOrder's position");
  eq(change.orderChanged.revision, 0, "live orderChanged.revision");
  eq(change.orderChanged.order.status, "OPEN", "live orderChanged.order.status");
  step("live subscription received OrderCreated");

  const lifecycle = [
    ["addOrderItem", ADD_ITEM, { orderId: id, item: { sku: "B-2", quantity: 1, unitPrice: "5.25" } }, "OPEN", "30.25", "OrderItemAdded"],
    ["changeOrderItemQuantity", CHANGE_QTY, { orderId: id, sku: "A-1", quantity: 3 }, "OPEN", "42.75", "OrderItemQuantityChanged"],
    ["removeOrderItem", REMOVE_ITEM, { orderId: id, sku: "B-2" }, "OPEN", "37.50", "OrderItemRemoved"],
    ["confirmOrder", CONFIRM, { orderId: id }, "CONFIRMED", "37.50", "OrderConfirmed"],
    ["markOrderPaid", PAY, { orderId: id, amount: "37.50", reference: `pay-${runID}` }, "PAID", "37.50", "OrderPaid"],
    ["shipOrder", SHIP, { orderId: id, carrier: "DHL", trackingReference: `TRK-${runID}` }, "SHIPPED", "37.50", "OrderShipped"],
    ["deliverOrder", DELIVER, { orderId: id }, "DELIVERED", "37.50", "OrderDelivered"],
    // Revision 5 is the OrderPaid event.
    ["correctOrderAmount", CORRECT, { orderId: id, correctedRevision: 5, newAmount: "35.00", reason: "loyalty discount" }, "DELIVERED", "35.00", "OrderAmountCorrected"],
  ];
  const types = ["OrderCreated"];
  for (const [name, doc, input, status, total, type] of lifecycle) {
    const p = (await run("mutate", doc, { input }, name))[name];
    types.push(type);
    checkPayload(p, { what: name, status, total, version: types.length, types: [type] });
    ok(big(p.position) > big(positions.at(-1)), `${name}: position ${p.position} is not after ${positions.at(-1)}`);
    positions.push(p.position);
    step(`${name} -> ${status} ${total}`);
  }

  const final = (await run("query", ORDER, { id, minPosition: positions.at(-1) }, "order after lifecycle")).order;
  eq(final.status, "DELIVERED", "final order.status");
  eq(final.total.amount, "35.00", "final order.total.amount");
  eq(final.items, [{ __typename: "OrderItem", sku: "A-1", quantity: 3, unitPrice: "12.50" }], "final order.items");
  eq(final.version, 9, "final order.version");
  eq([final.carrier, final.trackingReference], ["DHL", `TRK-${runID}`], "final order carrier, trackingReference");
  for (const f of ["confirmedAt", "paidAt", "shippedAt", "deliveredAt"]) ok(final[f], `final order.${f} is null`);
  eq(final.cancelledAt, null, "final order.cancelledAt");
  eq(final.corrections.length, 1, "final order.corrections length");
  const corr = final.corrections[0];
  eq([corr.correctedRevision, corr.oldAmount.amount, corr.newAmount.amount, corr.reason], [5, "37.50", "35.00", "loyalty discount"], "final order.corrections[0]");
  step("order after lifecycle");

  // The live subscription saw every change of order 1, in order.
  for (let rev = 1; rev < types.length; rev++) {
    let c = await live.next(`${types[rev]} of ${id}`);
    while (c.orderChanged.order.id !== id) c = await live.next(`${types[rev]} of ${id}`);
    eq([c.orderChanged.eventType, c.orderChanged.revision, c.orderChanged.position], [types[rev], rev, positions[rev]], `live change #${rev} of ${id} (eventType, revision, position)`);
  }
  step("live subscription saw all 9 changes in order");

  // ----- order 2: cancelled -----
  const c2 = (await run("mutate", CREATE, {
    input: { customerId: "c-1", currency: "USD", items: [{ sku: "C-3", quantity: 1, unitPrice: "9.99" }] },
  }, "createOrder (order 2)")).createOrder;
  checkPayload(c2, { what: "createOrder (order 2)", status: "OPEN", total: "9.99", version: 1, types: ["OrderCreated"] });
  const id2 = c2.order.id;
  ok(id2 !== id, "order 2 got the same ID as order 1", id2);
  const x2 = (await run("mutate", CANCEL, { input: { orderId: id2, reason: "customer changed their mind" } }, "cancelOrder")).cancelOrder;
  checkPayload(x2, { what: "cancelOrder", status: "CANCELLED", total: "9.99", version: 2, types: ["OrderCancelled"] });
  const o2 = (await run("query", ORDER, { id: id2, minPosition: x2.position }, "order 2 after cancel")).order;
  eq([o2.status, o2.cancelReason, !!o2.cancelledAt], ["CANCELLED", "customer changed their mind", true], "order 2 status, cancelReason, cancelledAt set");
  step(`order 2 ${id2} cancelled`);

  // ----- history and time travel -----
  const h = (await run("query", HISTORY, { id }, "order.history")).order;
  eq(h.history.map((e) => e.type), types, "history[].type");
  eq(h.history.map((e) => e.revision), types.map((_, i) => i), "history[].revision");
  eq(h.history.map((e) => e.position), positions, "history[].position equals the mutations' positions");
  eq(new Set(h.history.map((e) => e.eventId)).size, types.length, "history[].eventId are distinct");
  eq(h.asOf, {
    __typename: "OrderState", id, customerId: "c-1", status: "OPEN",
    total: { __typename: "Money", amount: "25.00", currency: "USD" },
    items: [{ __typename: "OrderItem", sku: "A-1", quantity: 2, unitPrice: "12.50" }],
    version: 1,
  }, "asOf(revision: 0)");
  step("history and asOf(revision: 0)");

  // ----- retry safety -----
  const commandId = `e2e-create-${runID}`;
  const retryInput = { input: { commandId, customerId: "c-1", currency: "USD", items: [{ sku: "D-4", quantity: 1, unitPrice: "1.00" }] } };
  const r1 = (await run("mutate", CREATE, retryInput, "createOrder with commandId")).createOrder;
  const r2 = (await run("mutate", CREATE, retryInput, "createOrder retried with the same commandId")).createOrder;
  eq(r2.order?.id, r1.order.id, "retried createOrder: order.id");
  eq(r2.position, r1.position, "retried createOrder: position");
  eq(r2.events.map((e) => [e.type, e.position]), r1.events.map((e) => [e.type, e.position]), "retried createOrder: events are the original ones");
  eq(r2.order.version, 1, "retried createOrder: nothing appended (version)");
  step("retry with the same commandId is idempotent");
  const lastPos = [r1.position, x2.position, positions.at(-1)].reduce((a, b) => (big(a) > big(b) ? a : b));

  // ----- customer and trends -----
  const cust = (await run("query", CUSTOMER, { id: "c-1", minPosition: lastPos }, "customer(c-1)")).customer;
  ok(cust, "customer(id: c-1) returned null");
  const b = before.customer ?? { orderCount: 0, openOrders: 0, lifetimeValue: [] };
  eq(cust.orderCount - b.orderCount, 3, "customer(c-1).orderCount grew by");
  eq(cust.openOrders - b.openOrders, 1, "customer(c-1).openOrders grew by (only the retry order is open)");
  eq(usd(cust.lifetimeValue) - usd(b.lifetimeValue), 3600, "customer(c-1).lifetimeValue USD grew by (cents: 35.00 + 1.00, cancelled excluded)");
  for (const oid of [id, id2, r1.order.id]) {
    ok(cust.orders.edges.some((e) => e.node.id === oid), `customer(c-1).orders lacks ${oid}`);
  }
  ok(cust.firstOrderAt && cust.lastOrderAt && Date.parse(cust.firstOrderAt) <= Date.parse(cust.lastOrderAt), "customer first/lastOrderAt", cust);
  step("customer(c-1) summary");

  const trends = (await run("query", TRENDS, { ...trendsRange(), minPosition: lastPos }, "orderTrends")).orderTrends;
  ok(trends.length >= 1, "orderTrends for the current hour is empty");
  const sum = (list, f) => list.reduce((acc, t) => acc + f(t), 0);
  const delta = (f) => sum(trends, f) - sum(before.trends, f);
  eq(delta((t) => t.ordersCreated), 3, "orderTrends ordersCreated grew by");
  eq(delta((t) => t.ordersConfirmed), 1, "orderTrends ordersConfirmed grew by");
  eq(delta((t) => t.ordersShipped), 1, "orderTrends ordersShipped grew by");
  eq(delta((t) => t.ordersCancelled), 1, "orderTrends ordersCancelled grew by");
  eq(delta((t) => cents(t.revenue.amount)), 3600, "orderTrends revenue grew by (cents)");
  for (const t of trends) {
    eq([t.bucket, t.currency], ["HOUR", "USD"], "orderTrends bucket, currency");
    ok(new Date(t.bucketStart).getUTCMinutes() === 0, "orderTrends bucketStart is not on the hour", t.bucketStart);
  }
  step("orderTrends for the current hour");

  const st = (await run("query", STATUS, {}, "projectionStatus")).projectionStatus;
  eq(st.state, "RUNNING", "projectionStatus.state");
  ok(big(st.checkpoint) >= big(lastPos), `projectionStatus.checkpoint ${st.checkpoint} is before the last write ${lastPos}`);
  eq(st.haltedAt, null, "projectionStatus.haltedAt");
  ok(typeof st.projection === "string" && st.projection, "projectionStatus.projection is empty", st);
  ok(st.connected === true, "projectionStatus.connected", st.connected);
  step(`projectionStatus (checkpoint ${st.checkpoint}, caughtUp ${st.caughtUp})`);

  // ----- bad input -----
  const item = (over) => ({ input: { customerId: "c-1", currency: "USD", items: [{ sku: "A-1", quantity: 1, unitPrice: "1.00", ...over }] } });
  await expectError("mutate", CREATE, item({ quantity: 0 }), "INVALID_INPUT", /quantity/i, "createOrder with quantity 0");
  await expectError("mutate", CREATE, item({ unitPrice: "-1" }), "INVALID_INPUT", /price|amount/i, 'createOrder with unitPrice "-1"');
  await expectError("mutate", CREATE, item({ unitPrice: "12.505" }), "INVALID_INPUT", /price|amount|decimal|digit|precision/i, 'createOrder with unitPrice "12.505"');
  const missing = `no-such-order-${runID}`;
  await expectError("query", ORDER, { id: missing }, "NOT_FOUND", /not found|no order|unknown|does not exist/i, "order(id:) of an unknown order");
  await expectError("mutate", CONFIRM, { input: { orderId: missing } }, "NOT_FOUND", /not found|no order|unknown|does not exist/i, "confirmOrder of an unknown order");
  step("bad input answered with INVALID_INPUT / NOT_FOUND");

  // ----- resumed subscriptions -----
  // For order 1, resume after its OrderConfirmed (revision 4): the replay
  // must start at OrderPaid and run to the correction with no gap or duplicate.
  const n = 4;
  const resumed = subscribe(ORDER_CHANGED, { orderId: id, fromPosition: positions[n] }, `orderChanged(orderId, fromPosition: ${positions[n]})`);
  for (let rev = n + 1; rev < types.length; rev++) {
    const c = (await resumed.next(`${types[rev]} (revision ${rev})`)).orderChanged;
    eq([c.order.id, c.eventType, c.revision, c.position], [id, types[rev], rev, positions[rev]], `resumed change after revision ${rev - 1}`);
  }
  step(`resumed orderChanged(orderId) from event ${n} replayed events ${n + 1}..${types.length - 1}`);

  // Unfiltered, from order 1's creation: every later write of this run must
  // come back exactly once and in position order.
  const mine = [...positions.slice(1), c2.position, x2.position, r1.position].sort((a, b) => (big(a) < big(b) ? -1 : 1));
  const all = subscribe(ORDER_CHANGED, { fromPosition: created.position }, `orderChanged(fromPosition: ${created.position})`);
  let prev = big(created.position);
  const seen = [];
  while (seen.length < mine.length) {
    const c = (await all.next(`the change at ${mine[seen.length]}`)).orderChanged;
    ok(big(c.position) > prev, `orderChanged(fromPosition): position ${c.position} after ${prev} (duplicate or out of order)`);
    prev = big(c.position);
    if (mine.includes(c.position)) seen.push(c.position);
    else if (big(c.position) > big(mine.at(-1))) break;
  }
  eq(seen, mine, "orderChanged(fromPosition) replayed exactly this run's later changes");
  step("resumed orderChanged(fromPosition) without gap or duplicate");

  // A live change after the replay reaches the resumed subscription too.
  const extra = (await run("mutate", CREATE, { input: { customerId: "c-2", currency: "USD", items: [{ sku: "E-5", quantity: 1, unitPrice: "2.00" }] } }, "createOrder after replay")).createOrder;
  let c = (await all.next("the live change after the replay")).orderChanged;
  while (big(c.position) < big(extra.position)) c = (await all.next("the live change after the replay")).orderChanged;
  eq([c.eventType, c.position, c.order.id], ["OrderCreated", extra.position, extra.order.id], "resumed subscription goes live after the replay");
  step("resumed subscription went live");

  for (const s of [live, resumed, all]) s.close();
}

await runScript("apollo.mjs", base, main, 120_000, async () => {
  await wsClient.dispose();
  client.stop();
});
