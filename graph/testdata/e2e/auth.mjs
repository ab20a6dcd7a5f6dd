// auth.mjs checks bearer-token authentication with Apollo Client 4 against a
// service started with --tokens: over HTTP, mutations without a token or
// with a wrong one fail with extensions.code UNAUTHENTICATED while queries
// stay open, and the valid token (HttpLink headers) is accepted; over
// graphql-ws (graphql-transport-ws), a socket without a valid token in
// connection_init is closed with 4403 before any data, and one with
// connectionParams {Authorization: "Bearer <token>"} receives changes.
// Finally it checks that the rejected attempts wrote nothing.
//
// Usage: node auth.mjs http://127.0.0.1:PORT TOKEN
// Exits 0 when every assertion holds; otherwise prints the failed assertion
// and exits 1.
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { isSubscriptionOperation } from "@apollo/client/utilities";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { AssertionFailed, describeEnd, fail, follow, graphQLErrors, ok, runScript, serviceURL, step, usage } from "./check.mjs";

const base = serviceURL("auth.mjs", " TOKEN");
const token = process.argv[3] ?? "";
if (!token) usage("auth.mjs", " TOKEN");
const httpURL = `${base}/graphql`;
const wsURL = httpURL.replace(/^http/, "ws");
const runID = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
const customerId = `c-auth-${runID}`;

/** Resolves with p, or fails after ms. */
function within(p, ms, what) {
  let t;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new AssertionFailed(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------- clients ----------

const disposers = [];

/** An HTTP-only Apollo Client; authorization is the header value or none. */
function httpClient(authorization) {
  const headers = authorization ? { Authorization: authorization } : {};
  const client = new ApolloClient({
    cache: new InMemoryCache(),
    link: new HttpLink({ uri: httpURL, headers }),
    defaultOptions: {
      query: { fetchPolicy: "no-cache", errorPolicy: "all" },
      mutate: { fetchPolicy: "no-cache", errorPolicy: "all" },
    },
  });
  disposers.push(() => client.stop());
  return client;
}

/**
 * An Apollo Client whose subscriptions go over graphql-ws with the given
 * connectionParams (queries and mutations over HTTP with httpAuth). It
 * records how the socket ended: closed.code / closed.reason.
 */
function wsApollo(connectionParams, httpAuth) {
  const state = { connected: false, closed: null };
  const wsClient = createClient({
    url: wsURL,
    webSocketImpl: WebSocket,
    connectionParams,
    retryAttempts: 0,
    lazy: true,
    on: {
      connected: () => (state.connected = true),
      closed: (e) => (state.closed ??= { code: e?.code, reason: e?.reason }),
    },
  });
  const client = new ApolloClient({
    cache: new InMemoryCache(),
    link: ApolloLink.split(
      ({ query }) => isSubscriptionOperation(query),
      new GraphQLWsLink(wsClient),
      new HttpLink({ uri: httpURL, headers: httpAuth ? { Authorization: httpAuth } : {} }),
    ),
    defaultOptions: {
      query: { fetchPolicy: "no-cache", errorPolicy: "all" },
      mutate: { fetchPolicy: "no-cache", errorPolicy: "all" },
    },
  });
  disposers.push(async () => {
    client.stop();
    await wsClient.dispose();
  });
  return { client, wsClient, state };
}

async function exec(client, kind, doc, variables, what) {
  return within(
    kind === "query" ? client.query({ query: doc, variables }) : client.mutate({ mutation: doc, variables }),
    10_000,
    what,
  );
}

/** Runs a query or mutation that must succeed and returns its data. */
async function run(client, kind, doc, variables, what) {
  const result = await exec(client, kind, doc, variables, what);
  const errs = graphQLErrors(result.error, what);
  if (errs.length) fail(`${what}: unexpected errors ${JSON.stringify(errs)}`);
  ok(result.data, `${what}: no data`);
  return result.data;
}

/** Runs a mutation that must fail with extensions.code UNAUTHENTICATED and no data. */
async function expectUnauthenticated(client, doc, variables, what) {
  const result = await exec(client, "mutate", doc, variables, what);
  const errs = graphQLErrors(result.error, what);
  if (!errs.length) fail(`${what}: expected an UNAUTHENTICATED error, got data ${JSON.stringify(result.data)}`);
  const e = errs.find((e) => e.extensions?.code === "UNAUTHENTICATED");
  if (!e) fail(`${what}: expected extensions.code UNAUTHENTICATED, got errors ${JSON.stringify(errs)}`);
  ok(!result.data?.createOrder, `${what}: an UNAUTHENTICATED mutation returned data`, result.data);
  return e;
}

/** Subscribes and queues results, errors and completion. */
function subscribe(client, doc, variables, label) {
  return follow(client.subscribe({ query: doc, variables }), label);
}

// ---------- operations ----------

const CREATE = gql`
  mutation Create($input: CreateOrderInput!) {
    createOrder(input: $input) { order { id customerId status } position }
  }
`;
const ORDERS = gql`
  query Orders($customerId: ID, $minPosition: Position) {
    orders(first: 100, filter: { customerId: $customerId }, minPosition: $minPosition) { edges { node { id customerId } } }
  }
`;
const LATEST = gql`query Latest { orders(first: 1) { edges { node { id } } } }`;
const ORDER_CHANGED = gql`
  subscription OrderChanged($customerId: ID) {
    orderChanged(customerId: $customerId) { order { id customerId } eventType position }
  }
`;

const input = (sku) => ({ input: { customerId, currency: "USD", items: [{ sku, quantity: 1, unitPrice: "3.00" }] } });

// ---------- the test ----------

async function main() {
  const anon = httpClient(null);
  const wrong = httpClient(`Bearer wrong-${token}`);
  const authed = httpClient(`Bearer ${token}`);

  const countOrders = async (client, minPosition, what) =>
    (await run(client, "query", ORDERS, { customerId, minPosition }, what)).orders.edges.map((e) => e.node.id);

  const before = await countOrders(anon, null, "orders(first: 100) before");
  ok(before.length === 0, `orders of the fresh customer ${customerId} before the test`, before);
  step(`baseline: customer ${customerId} has no orders`);

  // (1) No token: the mutation is refused, queries stay open.
  const e1 = await expectUnauthenticated(anon, CREATE, input("NO-TOKEN"), "createOrder without a token");
  step(`createOrder without a token -> UNAUTHENTICATED (${JSON.stringify(e1.message)})`);
  const latest = (await run(anon, "query", LATEST, {}, "orders(first: 1) without a token")).orders;
  ok(Array.isArray(latest?.edges) && latest.edges.length <= 1, "orders(first: 1) without a token: edges", latest);
  step("orders(first: 1) without a token still works");

  // (2) A wrong token.
  await expectUnauthenticated(wrong, CREATE, input("WRONG-TOKEN"), "createOrder with a wrong token");
  step("createOrder with a wrong token -> UNAUTHENTICATED");

  // (3) The valid token in HttpLink headers.
  const c1 = (await run(authed, "mutate", CREATE, input("VALID-TOKEN"), "createOrder with the valid token")).createOrder;
  ok(c1.order?.id && c1.order.customerId === customerId && c1.order.status === "OPEN", "createOrder with the valid token: order", c1.order);
  ok(/^\d+$/.test(c1.position ?? ""), "createOrder with the valid token: position", c1.position);
  step(`createOrder with the valid token -> ${c1.order.id} at ${c1.position}`);

  // (4) Subscriptions without a token, and with a wrong one: the socket is
  // closed with 4403 and the client gets an error, not data.
  for (const [label, params] of [
    ["no token", {}],
    ["a wrong token", { Authorization: `Bearer wrong-${token}` }],
  ]) {
    const { client, state } = wsApollo(params, null);
    const s = subscribe(client, ORDER_CHANGED, { customerId }, `orderChanged with ${label}`);
    const end = await s.end(10_000);
    ok(end, `orderChanged with ${label}: the subscription neither failed nor ended within 10 s (socket connected: ${state.connected})`);
    ok(end.kind === "error", `orderChanged with ${label}: expected an error, the server completed it`);
    ok(s.queue.length === 0, `orderChanged with ${label}: received data`, s.queue);
    ok(!state.connected, `orderChanged with ${label}: the server acknowledged connection_init`);
    ok(state.closed?.code === 4403, `orderChanged with ${label}: socket close code, want 4403`, state.closed);
    step(`orderChanged with ${label} -> socket closed ${state.closed.code} ${JSON.stringify(state.closed.reason)}, ${describeEnd(end)}`);
    s.close();
  }

  // (5) The valid token in connectionParams: the change of an order created
  // with the token arrives.
  {
    const { client, state } = wsApollo({ Authorization: `Bearer ${token}` }, `Bearer ${token}`);
    const s = subscribe(client, ORDER_CHANGED, { customerId }, "orderChanged with the valid token");
    const deadline = Date.now() + 10_000;
    while (!state.connected && !s.ended() && Date.now() < deadline) await sleep(20);
    ok(state.connected, `orderChanged with the valid token: no connection_ack within 10 s (${describeEnd(s.ended())}, closed ${JSON.stringify(state.closed)})`);
    // graphql-transport-ws has no acknowledgement for "subscribe"; give the
    // server a moment to start the subscription before the write.
    await sleep(500);
    const c2 = (await run(client, "mutate", CREATE, input("SUBSCRIBED"), "createOrder while subscribed")).createOrder;
    let ch = (await s.next(`OrderCreated of ${c2.order.id}`)).orderChanged;
    while (ch.order.id !== c2.order.id) ch = (await s.next(`OrderCreated of ${c2.order.id}`)).orderChanged;
    ok(ch.eventType === "OrderCreated" && ch.position === c2.position && ch.order.customerId === customerId,
      "orderChanged with the valid token: the change", ch);
    step(`orderChanged with the valid token received OrderCreated of ${c2.order.id} at ${c2.position}`);
    s.close();

    // (6) Only the two accepted creates were written.
    const after = await countOrders(anon, c2.position, "orders(first: 100) after");
    const want = [c1.order.id, c2.order.id].sort();
    ok(JSON.stringify([...after].sort()) === JSON.stringify(want),
      `orders of ${customerId} after the test: want exactly the two accepted orders ${JSON.stringify(want)} (the rejected attempts wrote nothing)`, after);
    step(`orders(first: 100): ${before.length} before, ${after.length} after (only the accepted creates)`);
  }
}

await runScript("auth.mjs", base, main, 60_000, () => Promise.allSettled(disposers.map((d) => d())));
