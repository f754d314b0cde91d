// Who may talk to `tmax serve`: with a token, every request but /health carries it, as
//   Authorization: Bearer <token>                     (HTTP clients, our Python client)
//   Authorization: Basic base64(<any user>:<token>)   (what `websockets` sends for ws://user:TOKEN@host: the way
//                                                      OpenEnv's EnvClient, which sets no header, can carry it)
//   ?token=<token>                                    (WebSocket clients that can set neither)
// compared in constant time. A server bound beyond loopback without a token is refused at start.
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127(\.\d{1,3}){3}$/.test(h) || h === "::ffff:127.0.0.1";
}

/** Refuses a token-less server on a non-loopback address, and tokens too short to guess-proof. */
export function checkTokenPolicy(host: string, token: string | undefined): void {
  if (token !== undefined && token.length < 16) throw new Error("--token: use at least 16 characters (e.g. `openssl rand -hex 16`)");
  if (!token && !isLoopback(host)) {
    throw new Error(`--host ${host} is reachable from other machines: pass --token (or set TMAX_SERVE_TOKEN) so that only your trainers can start sandboxes`);
  }
}

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

/** Constant-time equality (digests of equal length, whatever the inputs' lengths). */
export function tokenMatches(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

/** The token a request presents (header first, then the query), or null. */
export function presentedToken(req: IncomingMessage): string | null {
  const header = req.headers.authorization;
  if (header) {
    const [scheme, value = ""] = header.trim().split(/\s+/, 2);
    if (scheme?.toLowerCase() === "bearer") return value;
    if (scheme?.toLowerCase() === "basic") {
      const decoded = Buffer.from(value, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      return colon >= 0 ? decoded.slice(colon + 1) : decoded;
    }
  }
  const query = new URL(req.url ?? "/", "http://x").searchParams.get("token");
  return query;
}

/** True when no token is configured, or the request presents it. */
export function authorized(req: IncomingMessage, token: string | undefined): boolean {
  if (!token) return true;
  const given = presentedToken(req);
  return given !== null && tokenMatches(given, token);
}
