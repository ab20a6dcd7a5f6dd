// check.mjs holds what the end-to-end scripts share: reading the service's
// URL from the command line, assertions, the step log, reading Apollo
// results and following subscriptions, and running a script's main with a
// deadline, PASS/FAIL output and exit code.
import { CombinedGraphQLErrors } from "@apollo/client";

const started = performance.now();

export class AssertionFailed extends Error {}

export function fail(msg) {
  throw new AssertionFailed(msg);
}

// norm drops __typename (Apollo adds it) and sorts keys, for comparison.
export function norm(v) {
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.keys(v).filter((k) => k !== "__typename").sort().map((k) => [k, norm(v[k])]));
  }
  return v;
}

export function eq(got, want, what) {
  const g = JSON.stringify(norm(got));
  const w = JSON.stringify(norm(want));
  if (g !== w) fail(`${what}: expected ${w}, got ${g}`);
}

export function ok(cond, what, got) {
  if (!cond) fail(`${what}${got === undefined ? "" : `; got ${JSON.stringify(got)}`}`);
}

let stepStart = performance.now();
export function step(name) {
  const now = performance.now();
  console.log(`ok   ${name} (${Math.round(now - stepStart)} ms)`);
  stepStart = now;
}

// graphQLErrors returns the GraphQL errors of an Apollo result's error ([]
// when there is none); a transport error fails the check named what.
export function graphQLErrors(error, what = "") {
  if (!error) return [];
  if (CombinedGraphQLErrors.is(error)) return error.errors;
  fail(`${what ? `${what}: ` : ""}transport error instead of a GraphQL result: ${error.name}: ${error.message}`);
}

// describeEnd says how a followed subscription ended (see follow).
export function describeEnd(ended) {
  if (!ended) return "still open";
  if (ended.kind === "complete") return "completed by the server";
  const e = ended.error;
  return CombinedGraphQLErrors.is(e) ? `errors ${JSON.stringify(e.errors)}` : `${e?.name ?? "error"}: ${e?.message ?? e}`;
}

// follow subscribes to an Apollo subscription (client.subscribe(...)) and
// queues the data of its results. An error result, an error or completion
// ends it: ended() then returns {kind: "error", error} or {kind:
// "complete"}. next awaits the next data and fails the check, naming label,
// when none comes in time or the subscription has ended; end awaits the end.
export function follow(observable, label) {
  const queue = [];
  let ended = null;
  let waiter = null;
  const wake = () => waiter?.();
  const sub = observable.subscribe({
    next(r) {
      if (r.error) ended ??= { kind: "error", error: r.error };
      else queue.push(r.data);
      wake();
    },
    error(e) {
      ended ??= { kind: "error", error: e };
      wake();
    },
    complete() {
      ended ??= { kind: "complete" };
      wake();
    },
  });
  const waitFor = async (cond, timeoutMs) => {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      waiter = null;
    }
    return true;
  };
  return {
    queue,
    ended: () => ended,
    async next(what, timeoutMs = 10_000) {
      if (!(await waitFor(() => queue.length || ended, timeoutMs))) fail(`${label}: no change within ${timeoutMs} ms while waiting for ${what}`);
      if (!queue.length) fail(`${label}: waiting for ${what}: ${describeEnd(ended)}`);
      return queue.shift();
    },
    async end(timeoutMs = 10_000) {
      await waitFor(() => ended, timeoutMs);
      return ended;
    },
    close: () => sub.unsubscribe(),
  };
}

// serviceURL returns the service's base URL, the first argument, or exits
// 2 with usage when it is missing; rest describes the other arguments.
export function serviceURL(script, rest = "") {
  const base = (process.argv[2] ?? "").replace(/\/+$/, "");
  if (!/^https?:\/\//.test(base)) usage(script, rest);
  return base;
}

export function usage(script, rest = "") {
  console.error(`usage: node ${script} http://127.0.0.1:PORT${rest}`);
  process.exit(2);
}

// runScript runs main within timeoutMs, then cleanup (at most 5 s, whatever the
// outcome), prints PASS or FAIL with the failed assertion, and exits 0 or 1.
export async function runScript(script, base, main, timeoutMs, cleanup = async () => {}) {
  const timer = setTimeout(() => {
    console.error(`FAIL ${script}: timed out after ${timeoutMs / 1000} s`);
    process.exit(1);
  }, timeoutMs);
  let code = 0;
  try {
    await main();
    console.log(`PASS ${script} against ${base} in ${Math.round(performance.now() - started)} ms`);
  } catch (e) {
    console.error(`FAIL ${script}: ${e instanceof AssertionFailed ? e.message : e?.stack ?? e}`);
    code = 1;
  }
  clearTimeout(timer);
  await Promise.race([cleanup().catch(() => {}), new Promise((r) => setTimeout(r, 5_000))]);
  process.exit(code);
}
