// The resident executor: one long-lived bash process per container, started by one exec with an attached
// stream, runs every later command. A podman exec costs a conmon + runc start (≈90 ms, a process on the
// host); a request on the open stream costs a fork inside the container.
//
// Semantics are those of an exec (see docker.ts): argv without a shell, env and cwd per command, no stdin,
// `timeout -k 10 <limit>` in the container and a host watchdog, output capped per stream and drained, the
// command's exit code; processes it leaves in the background keep running, and its output ends when it exits.
// The process a command starts as has an exec's attributes (test/e2e/sandbox/docker/executor-contract.test.ts): the
// exec's environment exactly (read from /proc at the helper's start), its umask, a session and process group
// of its own, stdin /dev/null, fds 0-2 only, default signal dispositions.
//
// Framing (host → helper, stdin; the first line is a per-session key of 128 random bits, then one line per
// request, every word ANSI-C quoted by the host):
//   X <id> <timeout|0> <cap> <cwd> <n-env> <NAME=value>... <argv>...   run
//   O <id>                                                             send the output of a finished command
//   K <id>                                                             SIGKILL its process group
// helper → host: on stderr, lines `\x01<key> R` (ready), `\x01<key> F <why>` (cannot serve),
// `\x01<key> D <id> <exit code>`; on stdout only answers to O: `\x01<key> O <id> <out-bytes> <err-bytes>
// <out-total> <err-total>\n` + out + err. The key lives only in the helper's memory (not its argv, not its
// environment, not inherited by a command: the commands are exec'd), so a process that writes into the
// helper's streams through /proc/<helper>/fd/1|2 cannot make a frame: what it writes is skipped as noise, it
// never ends the executor (a forged `F` or a corrupt answer used to fail the command as an infrastructure error,
// which eval retries: a free re-roll). Output goes through readers that keep the first <cap> bytes in a
// private dir and count the rest, so a flood never fills the container's disk.
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import type Docker from "dockerode";
import { cappedBuffer, demuxer } from "../bytes/execOutput.js";
import type { ExecOptions, ExecResult } from "../types.js";
import { SandboxError } from "../types.js";

const KILL_AFTER_SEC = 10;
const WATCHDOG_SLACK_SEC = 15;
/** How long a starting helper may take to say it is ready before the sandbox falls back to plain execs. */
const START_TIMEOUT_MS = 10_000;
/**
 * The helper's control lines are short. Any process in the container running as root can open
 * /proc/<helper>/fd/1 or fd/2 and write there: the host keeps at most this much of a line it has not matched
 * yet (noise is dropped as it comes, never grown into a host string).
 */
const MAX_CONTROL_LINE = 4096;

// The helper. $1: a private dir name. Needs bash ≥ 5.1 (wait on a process substitution) and coreutils.
// Its own tools are resolved once, in the system dirs only (never the image's PATH, which starts with
// /usr/local/bin): a helper started in the verifier's snapshot must not run a `timeout`, `mkdir` or `head`
// the agent planted there before the quarantine moves them aside. The commands it runs keep their PATH.
/** The resident executor: bash, in assets/executor.sh (its kill delay filled in here). */
const HELPER = readFileSync(new URL("../../../assets/executor.sh", import.meta.url), "utf8").replaceAll("@KILL_AFTER_SEC@", String(KILL_AFTER_SEC));

/** ANSI-C quoting ($'...') with every byte outside printable ASCII (and ' and \) escaped: safe for eval. */
export function ansiQuote(s: string): string {
  let out = "$'";
  for (const b of Buffer.from(s, "utf8")) {
    if (b >= 0x20 && b < 0x7f && b !== 0x27 && b !== 0x5c) out += String.fromCharCode(b);
    else out += `\\x${b.toString(16).padStart(2, "0")}`;
  }
  return `${out}'`;
}

interface Pending {
  /** The command's per-stream cap: an answer announcing more bytes is not the helper's. */
  cap: number;
  onDone: (exitCode: number) => void;
  onOutput?: (out: Buffer, err: Buffer, outTotal: number, errTotal: number) => void;
  fail: (err: Error) => void;
}

export interface Executor {
  exec(argv: string[], workdir: string, opts: ExecOptions): Promise<ExecResult>;
  /** False once the helper died: the sandbox then uses plain execs. */
  readonly alive: boolean;
  close(): void;
}

/** Starts the helper in a running container; null when it cannot run there (the caller falls back to exec). */
export async function startExecutor(container: Docker.Container, nonce: string): Promise<Executor | null> {
  let stream: Duplex;
  try {
    const exec = await container.exec({
      // absolute: a `bash` the agent put earlier in the image's PATH must not become the helper
      Cmd: ["/bin/bash", "--noprofile", "--norc", "-c", HELPER, "tmax-executor", nonce],
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      WorkingDir: "/",
    });
    stream = (await exec.start({ hijack: true, stdin: true })) as unknown as Duplex;
  } catch {
    return null;
  }

  const pending = new Map<number, Pending>();
  let alive = true;
  let ready: ((ok: boolean) => void) | undefined;
  const readyPromise = new Promise<boolean>((resolve) => (ready = resolve));
  // the per-session key: frames carry it, nothing a command prints can
  const key = randomBytes(16).toString("hex");
  const mark = `\x01${key} `;
  const outMark = Buffer.from(`${mark}O `, "latin1");
  let errLine = "";
  let outBuf: Buffer = Buffer.alloc(0);
  let frame: { id: number; outLen: number; errLen: number; outTotal: number; errTotal: number } | null = null;

  const die = (why: string) => {
    if (!alive) return;
    alive = false;
    ready?.(false);
    stream.destroy();
    for (const p of pending.values()) p.fail(new SandboxError(why, "exec_failed"));
    pending.clear();
  };

  const onStdout = (chunk: Buffer) => {
    if (!alive) return;
    outBuf = outBuf.length ? Buffer.concat([outBuf, chunk]) : chunk;
    for (;;) {
      if (!frame) {
        // noise before an answer header is dropped (a partial header at the end is kept)
        const at = outBuf.indexOf(outMark);
        if (at < 0) {
          outBuf = outBuf.subarray(Math.max(0, outBuf.length - (outMark.length - 1)));
          return;
        }
        outBuf = outBuf.subarray(at);
        const nl = outBuf.indexOf(0x0a);
        if (nl < 0) {
          if (outBuf.length > MAX_CONTROL_LINE) outBuf = outBuf.subarray(1);
          return;
        }
        const m = /^(\d+) (\d+) (\d+) (\d+) (\d+)$/.exec(outBuf.subarray(outMark.length, nl).toString("latin1"));
        if (!m) {
          outBuf = outBuf.subarray(1);
          continue;
        }
        frame = { id: Number(m[1]), outLen: Number(m[2]), errLen: Number(m[3]), outTotal: Number(m[4]), errTotal: Number(m[5]) };
        // only the helper knows the key, and it answers only for commands it was asked about, with at most
        // `cap` bytes per stream: anything else is a broken helper
        const owner = pending.get(frame.id);
        if (!owner || frame.outLen > owner.cap || frame.errLen > owner.cap) return die("the executor's output stream is corrupt");
        outBuf = outBuf.subarray(nl + 1);
      }
      const need = frame.outLen + frame.errLen;
      if (outBuf.length < need) return;
      const out = outBuf.subarray(0, frame.outLen);
      const err = outBuf.subarray(frame.outLen, need);
      outBuf = outBuf.subarray(need);
      const p = pending.get(frame.id);
      const f = frame;
      frame = null;
      p?.onOutput?.(out, err, f.outTotal, f.errTotal);
    }
  };

  const onControl = (line: string) => {
    if (line === "R") ready?.(true);
    else if (line.startsWith("F ")) die(`executor cannot run: ${line.slice(2)}`);
    else {
      const m = /^D (\d+) (\d+)$/.exec(line);
      if (m) pending.get(Number(m[1]))?.onDone(Number(m[2]));
    }
  };
  const onStderr = (chunk: Buffer) => {
    if (!alive) return;
    errLine += chunk.toString("latin1");
    let nl: number;
    while ((nl = errLine.indexOf("\n")) >= 0) {
      const line = errLine.slice(0, nl);
      errLine = errLine.slice(nl + 1);
      // a frame is one write of the helper's, so noise can only come before it on its line
      const at = line.lastIndexOf(mark);
      if (at >= 0) onControl(line.slice(at + mark.length));
    }
    if (errLine.length > MAX_CONTROL_LINE) {
      const at = errLine.lastIndexOf(mark);
      errLine = at >= 0 && errLine.length - at <= MAX_CONTROL_LINE ? errLine.slice(at) : errLine.slice(-(mark.length - 1));
    }
  };

  stream.on("data", demuxer((which, data) => (which === "stdout" ? onStdout(data) : onStderr(data))));
  stream.once("end", () => die("the sandbox's executor exited"));
  stream.once("close", () => die("the sandbox's executor exited"));
  stream.once("error", (e) => die(`the sandbox's executor failed: ${e.message}`));
  stream.write(`${key}\n`);

  const timer = setTimeout(() => die("the executor did not start in time"), START_TIMEOUT_MS);
  const ok = await readyPromise;
  clearTimeout(timer);
  if (!ok) return null;

  let nextId = 1;
  const send = (line: string) => {
    if (alive) stream.write(`${line}\n`);
  };

  const executor: Executor = {
    get alive() {
      return alive;
    },
    close() {
      die("the executor was closed");
    },
    exec(argv, workdir, opts) {
      if (!alive) return Promise.reject(new SandboxError("the sandbox's executor is not running", "exec_failed"));
      const id = nextId++;
      const started = performance.now();
      const limitSec = opts.timeoutSec && opts.timeoutSec > 0 ? opts.timeoutSec : undefined;
      const cap = opts.maxOutputBytes ?? 1024 * 1024;
      const env = Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`);
      const words = [String(id), String(limitSec ?? 0), String(cap), ansiQuote(opts.cwd ?? workdir), String(env.length), ...env.map(ansiQuote), ...argv.map(ansiQuote)];

      return new Promise<ExecResult>((resolve, reject) => {
        let exitCode: number | undefined;
        let forced: "watchdog" | undefined;
        let settled = false;
        const watchdog = limitSec === undefined ? undefined : setTimeout(() => kill("watchdog"), (limitSec + WATCHDOG_SLACK_SEC) * 1000);
        const onAbort = () => {
          send(`K ${id}`);
          finish(() => reject(opts.signal?.reason ?? new Error("exec aborted")));
        };
        opts.signal?.addEventListener("abort", onAbort, { once: true });
        function kill(why: "watchdog") {
          forced = why;
          send(`K ${id}`);
          // the answer normally follows the kill at once; never wait on a helper that stopped answering
          setTimeout(() => finish(() => resolve({ stdout: "", stderr: "", exitCode: 124, timedOut: true, truncated: false, durationMs: Math.round(performance.now() - started) })), 5000).unref();
        }
        function finish(settle: () => void) {
          if (settled) return;
          settled = true;
          clearTimeout(watchdog);
          opts.signal?.removeEventListener("abort", onAbort);
          settle();
          // the answer may still be on its way after an abort: keep the entry until it arrives or the helper dies
          if (exitCode !== undefined) pending.delete(id);
        }
        pending.set(id, {
          cap,
          onDone(code) {
            exitCode = code;
            if (settled) {
              send(`O ${id}`); // fetch and discard, so the helper's files are removed
              pending.set(id, { cap, onDone() {}, onOutput: () => pending.delete(id), fail() {} });
              return;
            }
            send(`O ${id}`);
          },
          onOutput(out, err, outTotal, errTotal) {
            const stdout = cappedBuffer(cap);
            const stderr = cappedBuffer(cap);
            stdout.push(out);
            stderr.push(err);
            // the helper kept at most `cap` bytes and counted the rest: a push past the cap marks the buffer
            // truncated, so a character cut at the cap is dropped as on the exec path
            if (outTotal > out.length) stdout.push(Buffer.alloc(cap + 1));
            if (errTotal > err.length) stderr.push(Buffer.alloc(cap + 1));
            const elapsedMs = performance.now() - started;
            const code = forced ? 124 : exitCode!;
            // timeout(1) exits 124 after TERM, or 128+9 when it had to KILL (same reading as docker.ts).
            const timedOut = forced !== undefined || (limitSec !== undefined && (code === 124 || (code === 137 && elapsedMs >= limitSec * 1000)));
            finish(() =>
              resolve({
                stdout: stdout.text(),
                stderr: stderr.text(),
                exitCode: code,
                timedOut,
                truncated: outTotal > out.length || errTotal > err.length,
                durationMs: Math.round(elapsedMs),
              }),
            );
            pending.delete(id);
          },
          fail(e) {
            finish(() => reject(e));
          },
        });
        if (opts.signal?.aborted) return onAbort();
        send(`X ${words.join(" ")}`);
      });
    },
  };
  return executor;
}
