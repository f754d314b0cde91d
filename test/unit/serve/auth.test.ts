// Token checks of `tmax serve`: who counts as loopback, the start-time policy, and every way a token is presented.
import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { test } from "node:test";
import { authorized, checkTokenPolicy, isLoopback, presentedToken, tokenMatches } from "../../../src/serve/auth.js";
import { BusyError, parseOr, ResetParams, WsIncoming } from "../../../src/serve/protocol.js";

const req = (headers: Record<string, string>, url = "/ws") => ({ headers, url }) as unknown as IncomingMessage;
const TOKEN = "0123456789abcdef0123";

test("loopback addresses, and the token policy beyond them", () => {
  for (const h of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]) assert.ok(isLoopback(h), h);
  for (const h of ["0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "example.com"]) assert.ok(!isLoopback(h), h);
  assert.doesNotThrow(() => checkTokenPolicy("127.0.0.1", undefined));
  assert.throws(() => checkTokenPolicy("0.0.0.0", undefined), /--token/);
  assert.throws(() => checkTokenPolicy("0.0.0.0", "short"), /at least 16/);
  assert.doesNotThrow(() => checkTokenPolicy("0.0.0.0", TOKEN));
});

test("the token as a Bearer header, as Basic user info (OpenEnv's client), or as ?token=", () => {
  assert.equal(presentedToken(req({ authorization: `Bearer ${TOKEN}` })), TOKEN);
  assert.equal(presentedToken(req({ authorization: `Basic ${Buffer.from(`tmax:${TOKEN}`).toString("base64")}` })), TOKEN);
  assert.equal(presentedToken(req({}, `/ws?token=${TOKEN}`)), TOKEN);
  assert.equal(presentedToken(req({})), null);
  assert.ok(authorized(req({ authorization: `Bearer ${TOKEN}` }), TOKEN));
  assert.ok(!authorized(req({ authorization: `Bearer ${TOKEN}x` }), TOKEN));
  assert.ok(!authorized(req({}), TOKEN));
  assert.ok(authorized(req({}), undefined));
  assert.ok(tokenMatches(TOKEN, TOKEN) && !tokenMatches("", TOKEN) && !tokenMatches(TOKEN.slice(1), TOKEN));
});

test("OpenEnv's messages: extra fields of a message are refused, reset parameters are open", () => {
  assert.equal(WsIncoming.safeParse({ type: "state" }).success, true);
  assert.equal(WsIncoming.safeParse({ type: "state", data: {} }).success, false);
  assert.equal(WsIncoming.safeParse({ type: "step" }).success, false);
  assert.deepEqual(WsIncoming.parse({ type: "reset" }), { type: "reset", data: {} });
  assert.equal(parseOr(ResetParams, { task_id: "x", anything: 1 }, "reset").task_id, "x");
  assert.throws(() => parseOr(ResetParams, { seed: -1 }, "reset"), (e: Error & { code?: string }) => e.code === "VALIDATION_ERROR");
  const busy = new BusyError(3, 3);
  assert.equal(busy.message, "Server at capacity: 3/3 sessions active. Cannot accept new connections.");
  assert.deepEqual(busy.extra, { active_sessions: 3, max_sessions: 3 });
});
