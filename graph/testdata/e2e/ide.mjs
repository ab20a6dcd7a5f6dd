// ide.mjs loads the GraphiQL IDE served at "/" in headless Chromium and uses
// it like a person would: runs a query, then a subscription that must show a
// change made meanwhile from outside the browser. Every request the page
// makes must stay on 127.0.0.1 (the IDE is served from the binary, not a CDN).
//
// Usage: node ide.mjs http://127.0.0.1:PORT [screenshot.png]
// Needs /usr/bin/chromium (Debian's chromium package); playwright-core drives
// it and downloads no browser. Exits 0 when every assertion holds; otherwise
// prints the failed assertion and exits 1.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

import { fail, runScript, serviceURL, step } from "./check.mjs";

const base = serviceURL("ide.mjs", " [screenshot.png]");
const screenshot = process.argv[3];
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";

// A URL is local when it is on the loopback address, or carries no network
// request at all (data:, blob:, about:).
function isLocal(url) {
  const u = new URL(url);
  if (["data:", "blob:", "about:"].includes(u.protocol)) return true;
  return u.hostname === "127.0.0.1";
}

const userDataDir = mkdtempSync(join(tmpdir(), "ordertrail-ide-"));
let context;

async function main() {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  step(`launched ${executablePath} ${context.browser()?.version() ?? ""}`.trim());

  // Record every request; abort (and fail on) any that would leave 127.0.0.1.
  const requests = [];
  const offsite = [];
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (isLocal(url)) return route.continue();
    offsite.push(url);
    return route.abort("blockedbyclient");
  });
  context.on("request", (r) => requests.push(`${r.method()} ${r.url()}`));

  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  page.on("pageerror", (e) => problems.push(`uncaught exception: ${e.message}`));
  page.on("console", (m) => {
    const text = m.text();
    if (m.type() === "error" && /Content Security Policy|integrity|Refused to/i.test(text)) problems.push(`console: ${text}`);
  });
  const sockets = [];
  page.on("websocket", (ws) => {
    const s = { url: ws.url(), sent: [], received: [] };
    sockets.push(s);
    if (!isLocal(ws.url().replace(/^ws/, "http"))) offsite.push(ws.url());
    ws.on("framesent", (f) => s.sent.push(String(f.payload)));
    ws.on("framereceived", (f) => s.received.push(String(f.payload)));
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  const handshakes = [];
  cdp.on("Network.webSocketHandshakeResponseReceived", (e) => {
    const headers = Object.fromEntries(Object.entries(e.response.headers).map(([k, v]) => [k.toLowerCase(), v]));
    handshakes.push({ status: e.response.status, protocol: headers["sec-websocket-protocol"] });
  });

  const resp = await page.goto(`${base}/`, { waitUntil: "load" });
  if (resp?.status() !== 200) fail(`GET / returned ${resp?.status()}`);
  try {
    await page.waitForSelector(".graphiql-query-editor .CodeMirror", { timeout: 15_000 });
  } catch {
    const shown = await page.locator("body").innerText().catch(() => "");
    fail(`GraphiQL did not render within 15 s (page shows ${JSON.stringify(shown.slice(0, 200))}; offsite: ${offsite.join(", ")}; problems: ${problems.join("; ")})`);
  }
  step("GraphiQL rendered");

  async function runInEditor(query) {
    await page.evaluate((q) => document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue(q), query);
    // GraphiQL 4 parses the editor's value on a debounce; clicking run at
    // once would execute the previous document.
    await page.waitForTimeout(500);
    await page.click(".graphiql-execute-button");
  }
  const result = () => page.evaluate(() => document.querySelector(".result-window .CodeMirror")?.CodeMirror.getValue() ?? "");
  async function waitForResult(pred, what, timeoutMs = 10_000) {
    const deadline = Date.now() + timeoutMs;
    let text = "";
    while (Date.now() < deadline) {
      text = await result();
      if (text && pred(text)) return text;
      await page.waitForTimeout(100);
    }
    fail(`result pane: no ${what} within ${timeoutMs} ms; it shows ${JSON.stringify(text.slice(0, 500))}`);
  }

  // A query.
  await runInEditor("{ orders(first: 5) { edges { node { id status } } } }");
  const text = await waitForResult((t) => t.includes('"orders"') || t.includes('"errors"'), "orders result");
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    fail(`result pane is not JSON: ${text.slice(0, 300)}`);
  }
  if (body.errors) fail(`query from the IDE returned errors: ${JSON.stringify(body.errors)}`);
  if (!Array.isArray(body.data?.orders?.edges)) fail(`query from the IDE: data.orders.edges is not a list: ${text.slice(0, 300)}`);
  step(`query ran in the IDE (${body.data.orders.edges.length} orders)`);

  // A subscription, which must go over the websocket.
  await runInEditor("subscription { orderChanged { eventType } }");
  const deadline = Date.now() + 10_000;
  while (!sockets.some((s) => s.sent.some((f) => f.includes('"subscribe"') && f.includes("orderChanged")))) {
    if (Date.now() > deadline) fail(`the IDE sent no "subscribe" message over a websocket within 10 s (sockets: ${JSON.stringify(sockets.map((s) => s.url))})`);
    await page.waitForTimeout(50);
  }
  if (!handshakes.some((h) => h.status === 101 && h.protocol === "graphql-transport-ws")) {
    fail(`websocket handshake: expected 101 with Sec-WebSocket-Protocol graphql-transport-ws, got ${JSON.stringify(handshakes)}`);
  }
  // No acknowledgement for "subscribe" in graphql-transport-ws: let the
  // server start the resolver before the change is made.
  await page.waitForTimeout(500);
  step("subscription started over graphql-transport-ws");

  const res = await fetch(`${base}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      query: `mutation { createOrder(input: {customerId: "c-ide", currency: "USD", items: [{sku: "I-1", quantity: 1, unitPrice: "3.00"}]}) { order { id } position } }`,
    }),
  });
  const created = await res.json();
  if (res.status !== 200 || created.errors || !created.data?.createOrder?.order?.id) {
    fail(`createOrder from Node: HTTP ${res.status} ${JSON.stringify(created)}`);
  }
  step(`createOrder ${created.data.createOrder.order.id} from Node`);

  const live = await waitForResult((t) => t.includes('"eventType": "OrderCreated"'), "live OrderCreated");
  step(`live result in the IDE: ${live.replace(/\s+/g, " ")}`);

  if (screenshot) {
    await page.screenshot({ path: screenshot, fullPage: true });
    step(`screenshot ${screenshot}`);
  }

  if (offsite.length) fail(`the page tried to leave 127.0.0.1: ${offsite.join(", ")}`);
  if (problems.length) fail(`the page reported: ${problems.join("; ")}`);
  const traffic = [...new Set(requests), ...sockets.map((s) => `WEBSOCKET ${s.url}`)];
  console.log(`     ${requests.length} requests and ${sockets.length} websocket(s), all to 127.0.0.1:\n       ${traffic.join("\n       ")}`);
}

await runScript("ide.mjs", base, main, 90_000, async () => {
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
});
