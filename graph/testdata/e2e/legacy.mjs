// legacy.mjs checks the legacy websocket protocol (subprotocol "graphql-ws",
// as spoken by the unmaintained subscriptions-transport-ws): Apollo Client 4's
// WebSocketLink carries a subscription, mutations and a query over one socket.
//
// Usage: node legacy.mjs http://127.0.0.1:PORT
// Exits 0 when every assertion holds; otherwise prints the failed assertion
// and exits 1.
import { ApolloClient, InMemoryCache, gql } from "@apollo/client";
import { WebSocketLink } from "@apollo/client/link/ws";
import { SubscriptionClient } from "subscriptions-transport-ws";
import WebSocket from "ws";

import { AssertionFailed, eq, fail, follow, graphQLErrors, runScript, serviceURL, step } from "./check.mjs";

const base = serviceURL("legacy.mjs");
const wsURL = `${base}/graphql`.replace(/^http/, "ws");
const ORDER_CHANGED = gql`
  subscription {
    orderChanged { order { id status } eventType position }
  }
`;
const CREATE = gql`
  mutation Create($input: CreateOrderInput!) {
    createOrder(input: $input) { order { id status total { amount currency } version } position }
  }
`;
const CONFIRM = gql`
  mutation Confirm($input: OrderCommandInput!) {
    confirmOrder(input: $input) { order { id status version } events { type } position }
  }
`;
const ORDER = gql`
  query Order($id: ID!, $minPosition: Position) {
    order(id: $id, minPosition: $minPosition) { id customerId status total { amount currency } version lastPosition }
  }
`;

const subClient = new SubscriptionClient(wsURL, { reconnect: false, lazy: false, timeout: 10_000 }, WebSocket);
const client = new ApolloClient({
  cache: new InMemoryCache(),
  link: new WebSocketLink(subClient),
  defaultOptions: {
    query: { fetchPolicy: "no-cache", errorPolicy: "all" },
    mutate: { fetchPolicy: "no-cache", errorPolicy: "all" },
  },
});

async function run(kind, doc, variables, what) {
  const r = kind === "query" ? await client.query({ query: doc, variables }) : await client.mutate({ mutation: doc, variables });
  const errs = graphQLErrors(r.error);
  if (errs.length) fail(`${what}: unexpected errors ${JSON.stringify(errs)}`);
  if (!r.data) fail(`${what}: no data`);
  return r.data;
}

async function main() {
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new AssertionFailed("legacy websocket: not connected within 10 s")), 10_000);
    subClient.onConnected(() => {
      clearTimeout(t);
      resolve();
    });
    subClient.onError((e) => reject(new AssertionFailed(`legacy websocket error: ${e?.message ?? e}`)));
  });
  eq(subClient.client.protocol, "graphql-ws", "negotiated websocket subprotocol");
  step("connected with subprotocol graphql-ws");

  // Subscribe first, then write over the same socket.
  const changes = follow(client.subscribe({ query: ORDER_CHANGED }), "orderChanged over graphql-ws");
  async function nextFor(orderID, what) {
    for (;;) {
      const c = (await changes.next(what)).orderChanged;
      if (c.order.id === orderID) return c;
    }
  }
  // The legacy protocol does not acknowledge "start"; let the server run the
  // subscription resolver before the mutation commits.
  await new Promise((r) => setTimeout(r, 500));
  step("subscribed to orderChanged");

  const created = (await run("mutate", CREATE, {
    input: { customerId: "c-legacy", currency: "USD", items: [{ sku: "L-1", quantity: 4, unitPrice: "2.50" }] },
  }, "createOrder over graphql-ws")).createOrder;
  eq([created.order?.status, created.order?.total, created.order?.version], ["OPEN", { amount: "10.00", currency: "USD" }, 1], "createOrder over graphql-ws: status, total, version");
  if (!/^\d+$/.test(created.position)) fail(`createOrder over graphql-ws: position ${JSON.stringify(created.position)} is not a decimal string`);
  const id = created.order.id;
  step(`createOrder ${id} over graphql-ws`);

  let c = await nextFor(id, "OrderCreated");
  eq([c.eventType, c.position, c.order.status], ["OrderCreated", created.position, "OPEN"], "orderChanged over graphql-ws (eventType, position, status)");
  step("subscription received OrderCreated");

  const confirmed = (await run("mutate", CONFIRM, { input: { orderId: id } }, "confirmOrder over graphql-ws")).confirmOrder;
  eq([confirmed.order?.status, confirmed.order?.version, confirmed.events.map((e) => e.type)], ["CONFIRMED", 2, ["OrderConfirmed"]], "confirmOrder over graphql-ws: status, version, events");
  c = await nextFor(id, "OrderConfirmed");
  eq([c.eventType, c.position, c.order.status], ["OrderConfirmed", confirmed.position, "CONFIRMED"], "orderChanged over graphql-ws after confirm");
  step("confirmOrder and its change");

  const o = (await run("query", ORDER, { id, minPosition: confirmed.position }, "order over graphql-ws")).order;
  eq(o, { id, customerId: "c-legacy", status: "CONFIRMED", total: { amount: "10.00", currency: "USD" }, version: 2, lastPosition: confirmed.position }, "order(id, minPosition) over graphql-ws");
  step("query over graphql-ws");

  const bad = await client.mutate({ mutation: CONFIRM, variables: { input: { orderId: `no-such-order-${Date.now()}` } } });
  const errs = graphQLErrors(bad.error);
  if (!errs.some((e) => e.extensions?.code === "NOT_FOUND")) {
    fail(`confirmOrder of an unknown order over graphql-ws: expected extensions.code NOT_FOUND, got ${JSON.stringify({ data: bad.data, errors: errs })}`);
  }
  step("error over graphql-ws carries extensions.code");

  changes.close();
}

await runScript("legacy.mjs", base, main, 60_000, async () => {
  subClient.close();
  client.stop();
});
