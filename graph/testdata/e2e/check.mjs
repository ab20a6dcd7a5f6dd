// check.mjs holds what the end-to-end scripts share: reading the service's
// URL from the command line, assertions, the step log, and running a
// script's main with a deadline, PASS/FAIL output and exit code.

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
