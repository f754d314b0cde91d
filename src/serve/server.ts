// `tmax serve`'s HTTP and WebSocket server, on OpenEnv's routes (http_server.py): /ws (sessions), /health,
// /metadata, /schema, /state, stateless /reset and /step; plus /tasks, /capacity and /episodes (whole episodes).
import http from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import { z } from "zod";
import { TMAX_VERSION } from "../util/version.js";
import { authorized, checkTokenPolicy } from "./auth.js";
import { pickTask, type ServeEnv } from "./env.js";
import { EpisodesRequest, prepareEpisodes, runEpisodes } from "./episodes.js";
import { HarnessAction } from "./harness.js";
import { SessionPool } from "./pool.js";
import {
  BaseState,
  BusyError,
  parseOr,
  ProtocolError,
  ResetParams,
  StepRequest,
  WsClose,
  WsReset,
  WsState,
  WsStep,
  wsError,
  wsObservation,
  wsState,
  type EnvironmentMetadata,
} from "./protocol.js";
import type { Session } from "./session.js";
import { Tb2Action, Tb2Observation, Tb2State } from "./tb2.js";

export interface ServeOptions {
  env: ServeEnv;
  host: string;
  port: number;
  token?: string;
  maxSessions: number;
  idleTimeoutSec: number;
  log?: (line: string) => void;
}

export interface ServeHandle {
  url: string;
  port: number;
  pool: SessionPool;
  /** Stops accepting, closes every session (sandboxes removed), then the server. */
  close(): Promise<void>;
}

/** Largest WebSocket message (a write_file's content, a long completion's token ids). */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
const MAX_BODY_BYTES = 1024 * 1024;
const MESSAGE_TYPES = new Set(["reset", "step", "state", "close"]);

export async function startServer(opts: ServeOptions): Promise<ServeHandle> {
  checkTokenPolicy(opts.host, opts.token);
  const { env } = opts;
  const log = opts.log ?? (() => {});
  const sockets = new Map<Session, WebSocket>();
  const pool = new SessionPool(env, {
    maxSessions: opts.maxSessions,
    idleTimeoutSec: opts.idleTimeoutSec,
    onIdle: (s) => closeSocket(s, new ProtocolError("SESSION_ERROR", `session idle for more than ${opts.idleTimeoutSec}s: closed and its sandbox removed`)),
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  let shuttingDown = false;

  function closeSocket(session: Session, why?: ProtocolError): void {
    const ws = sockets.get(session);
    sockets.delete(session);
    if (!ws) return;
    if (why && ws.readyState === ws.OPEN) ws.send(JSON.stringify(wsError(why)));
    ws.close(1000);
  }

  wss.on("connection", (ws: WebSocket) => {
    let session: Session;
    try {
      if (shuttingDown) throw new ProtocolError("SESSION_ERROR", "server is shutting down");
      session = pool.open();
    } catch (e) {
      // OpenEnv's order: accepted, then the capacity error, then closed — at once, never queued
      ws.send(JSON.stringify(wsError(asProtocolError(e))));
      ws.close(1000);
      return;
    }
    sockets.set(session, ws);
    const send = (body: unknown) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(body));
    };
    ws.on("message", (raw: RawData, isBinary: boolean) => {
      let message: unknown;
      try {
        message = JSON.parse(isBinary ? Buffer.from(raw as Buffer).toString("utf8") : raw.toString());
      } catch (e) {
        send(wsError(new ProtocolError("INVALID_JSON", `Invalid JSON: ${(e as Error).message}`)));
        return;
      }
      const type = (message as { type?: unknown } | null)?.type;
      if (typeof type !== "string" || !MESSAGE_TYPES.has(type)) {
        send(wsError(new ProtocolError("UNKNOWN_TYPE", `Unknown message type: ${typeof type === "string" ? type : ""}`)));
        return;
      }
      session
        .serial(async () => {
          switch (type) {
            case "reset":
              return wsObservation(await session.reset(parseOr(WsReset, message, "message").data));
            case "step":
              return wsObservation(await session.step(parseOr(WsStep, message, "message").data));
            case "state":
              parseOr(WsState, message, "message");
              return wsState(session.state());
            default:
              parseOr(WsClose, message, "message");
              return null; // OpenEnv answers close by closing
          }
        })
        .then(
          (body) => {
            if (body) send(body);
            else closeSocket(session);
          },
          (e) => send(wsError(asProtocolError(e))),
        );
    });
    ws.on("close", () => {
      sockets.delete(session);
      void pool.close(session);
    });
    ws.on("error", () => undefined);
  });

  const server = http.createServer((req, res) => {
    route(req, res).catch((e) => sendJson(res, 500, { detail: (e as Error).message.split("\n")[0] }));
  });

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://x");
    const p = url.pathname.replace(/\/+$/, "") || "/";
    if (req.method === "GET" && p === "/health") return sendJson(res, 200, { status: "healthy" });
    if (!authorized(req, opts.token)) return sendJson(res, 401, { detail: "missing or wrong token (Authorization: Bearer <token>)" });
    if (req.method === "GET") {
      if (p === "/metadata") return sendJson(res, 200, metadata(env));
      if (p === "/schema") return sendJson(res, 200, schemas(env));
      if (p === "/state") return sendJson(res, 200, BaseState.parse({}));
      if (p === "/capacity") return sendJson(res, 200, pool.capacity());
      if (p === "/tasks") return sendJson(res, 200, { tasks: [...env.tasks.values()].map((t) => ({ task_id: t.name, difficulty: t.config.difficulty ?? null, category: t.config.category ?? null })) });
    }
    if (req.method === "POST") {
      if (p === "/reset") return statelessReset(req, res);
      if (p === "/step") {
        parseOr(StepRequest, await readJson(req), "request");
        return sendJson(res, 409, { detail: "a stateless /step has no episode (each HTTP request would get a fresh sandbox): open a session on /ws, reset, then step" });
      }
      if (p === "/episodes") return episodes(req, res);
    }
    return sendJson(res, 404, { detail: "Not Found" });
  }

  /** POST /reset: the reset observation of a task without a sandbox (instruction, id) — the episode itself needs /ws. */
  async function statelessReset(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const params = parseOr(ResetParams, (await readJson(req)) ?? {}, "request");
      const task = pickTask(env, params);
      const observation: z.infer<typeof Tb2Observation> = { instruction: task.instruction, output: "", success: true, error: "", task_id: task.name, task_path: task.dir, session_id: null, action_type: "reset", info: { stateless: true } };
      sendJson(res, 200, { observation, reward: 0, done: false });
    } catch (e) {
      const pe = asProtocolError(e);
      sendJson(res, pe.code === "VALIDATION_ERROR" ? 422 : 400, { detail: pe.message, ...pe.extra });
    }
  }

  async function episodes(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let release: () => void;
    let names: string[];
    let body: EpisodesRequest;
    try {
      body = parseOr(EpisodesRequest, await readJson(req), "request");
      release = pool.reserve(body.concurrency); // busy at once, before the endpoint is probed
    } catch (e) {
      const pe = asProtocolError(e);
      return sendJson(res, pe instanceof BusyError ? 503 : 422, { detail: pe.message, ...pe.extra });
    }
    try {
      names = await prepareEpisodes(env, body);
    } catch (e) {
      release();
      return sendJson(res, 400, { detail: asProtocolError(e).message });
    }
    const hangup = new AbortController();
    res.on("close", () => hangup.abort(new Error("client hung up")));
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    try {
      for await (const line of runEpisodes(env, body, names, hangup.signal)) res.write(`${JSON.stringify(line)}\n`);
    } finally {
      release();
      res.end();
    }
  }

  server.on("upgrade", (req, socket, head) => {
    const p = new URL(req.url ?? "/", "http://x").pathname.replace(/\/+$/, "");
    if (!p.endsWith("/ws")) return rejectUpgrade(socket, 404, "Not Found");
    if (!authorized(req, opts.token)) return rejectUpgrade(socket, 401, "Unauthorized");
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const shownHost = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  log(`listening on http://${shownHost}:${port}`);

  let closing: Promise<void> | null = null;
  return {
    url: `http://${shownHost}:${port}`,
    port,
    pool,
    close: () =>
      (closing ??= (async () => {
        shuttingDown = true;
        server.close();
        for (const s of [...sockets.keys()]) closeSocket(s, new ProtocolError("SESSION_ERROR", "server is shutting down: session closed and its sandbox removed"));
        await pool.closeAll();
        wss.close();
        server.closeAllConnections();
      })()),
  };
}

function asProtocolError(e: unknown): ProtocolError {
  if (e instanceof ProtocolError) return e;
  return new ProtocolError("EXECUTION_ERROR", e instanceof Error ? e.message.split("\n")[0]! : String(e));
}

function rejectUpgrade(socket: import("node:stream").Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new ProtocolError("VALIDATION_ERROR", `request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8").trim();
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ProtocolError("INVALID_JSON", `Invalid JSON: ${(e as Error).message}`);
  }
}

function metadata(env: ServeEnv): EnvironmentMetadata {
  return {
    name: "tmax",
    description: `Terminal-Bench tasks of ${env.datasetDir} in real sandboxes: OpenEnv's tbench2 actions (exec, write_file, evaluate, close) or the Tmax harness (one model turn per step, profile eval or train), rewards from the task's verifier with a tamper report`,
    readme_content: null,
    version: TMAX_VERSION,
    author: "tmax",
    documentation_url: null,
  };
}

/** OpenEnv's SchemaResponse: the default action set's schemas first, the other one beside it. */
function schemas(env: ServeEnv): Record<string, unknown> {
  const tb2 = { action: { title: "Tbench2Action", ...z.toJSONSchema(Tb2Action, { io: "input" }) }, observation: { title: "Tbench2Observation", ...z.toJSONSchema(Tb2Observation) }, state: { title: "Tbench2State", ...z.toJSONSchema(Tb2State) } };
  const harness = { action: { title: "TmaxHarnessAction", ...z.toJSONSchema(HarnessAction, { io: "input" }) }, observation: { title: "TmaxHarnessObservation", type: "object" }, state: { title: "TmaxHarnessState", type: "object" } };
  const [first, second] = env.actionSet === "harness" ? [harness, tb2] : [tb2, harness];
  return {
    action: { oneOf: [first.action, second.action] },
    observation: { oneOf: [first.observation, second.observation] },
    state: { oneOf: [first.state, second.state] },
  };
}
