// One command in a docker sandbox's container, as one engine exec: the in-container `timeout` wrapper and the
// host watchdog, the stdout/stderr demux under a cap, the exit code, and killing an exec the host gave up on.
// (The resident executor, executor.ts, runs most commands; this is its fallback and the `direct` path.)
import { readFile as readHostFile } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import type Docker from "dockerode";
import { DEFAULT_MAX_OUTPUT_BYTES, cappedBuffer, demuxer } from "../bytes/execOutput.js";
import { SandboxError, type ExecOptions, type ExecResult } from "../types.js";
import { engineAddress, engineError, engineMessage, isUnreachable, statusCode, unreachableError } from "./engine.js";

/** `timeout -k`: grace between the TERM at the deadline and the KILL (same as the Terminal-Bench harness). */
const KILL_AFTER_SEC = 10;
/** The host gives up on an exec stream this long after the in-container deadline. */
const WATCHDOG_SLACK_SEC = 15;
/** After the host watchdog killed an exec, how long its stream may take to deliver what was written before. */
const WATCHDOG_DRAIN_MS = 2_000;
/**
 * tmax's own exec wrapper, by absolute path: a `timeout` the agent put earlier in PATH (/usr/local/bin) is
 * never used. Images without it fall back to the host watchdog (see execInContainer).
 */
export const TIMEOUT_BINARY = "/usr/bin/timeout";

/** Which sandbox an exec runs in: its name (for errors) and its workdir (relative cwds resolve against it). */
export interface ExecTarget {
  name: string;
  workdir: string;
}

export function toEnvList(env?: Record<string, string>): string[] | undefined {
  return env ? Object.entries(env).map(([k, v]) => `${k}=${v}`) : undefined;
}

export async function execInContainer(
  docker: Docker,
  container: Docker.Container,
  info: ExecTarget,
  state: { hasTimeoutBinary: boolean },
  argv: string[],
  opts: ExecOptions,
): Promise<ExecResult> {
  if (argv.length === 0) throw new SandboxError("exec needs a command (argv is empty)", "exec_failed");
  opts.signal?.throwIfAborted();
  const started = performance.now();
  const limitSec = opts.timeoutSec && opts.timeoutSec > 0 ? opts.timeoutSec : undefined;
  const wrapped = limitSec !== undefined && state.hasTimeoutBinary;
  const cmd = wrapped ? [TIMEOUT_BINARY, "-k", String(KILL_AFTER_SEC), String(limitSec), ...argv] : argv;
  const cap = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  const stdout = cappedBuffer(cap);
  const stderr = cappedBuffer(cap);

  let exec: Docker.Exec;
  let stream: Readable;
  try {
    exec = await container.exec({
      Cmd: cmd,
      AttachStdin: false,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      Env: toEnvList(opts.env),
      WorkingDir: opts.cwd ? path.posix.resolve(info.workdir, opts.cwd) : undefined,
      User: opts.user,
    });
    stream = (await exec.start({})) as unknown as Readable;
  } catch (err) {
    throw execError(docker, err, info);
  }

  // Without the in-container `timeout`, the host deadline is the only one.
  const watchdogMs = limitSec === undefined ? undefined : (limitSec + (wrapped ? WATCHDOG_SLACK_SEC : 0)) * 1000;
  const onData = demuxer((which, data) => (which === "stdout" ? stdout : stderr).push(data));
  let ended = false;
  const endedPromise = new Promise<void>((resolve) => {
    const onEnd = () => {
      ended = true;
      resolve();
    };
    stream.once("end", onEnd);
    stream.once("close", onEnd);
    stream.once("error", onEnd);
  });
  const detach = () => {
    stream.off("data", onData);
    stream.destroy();
  };
  const outcome = await new Promise<"end" | "watchdog" | "abort" | Error>((done) => {
    const timer = watchdogMs === undefined ? undefined : setTimeout(() => finish("watchdog"), watchdogMs);
    const onAbort = () => finish("abort");
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    let settled = false;
    function finish(result: "end" | "watchdog" | "abort" | Error) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      // after the watchdog the stream stays attached: what the command wrote before it was killed still arrives
      if (result !== "watchdog") stream.off("data", onData);
      if (result !== "end" && result !== "watchdog") stream.destroy();
      done(result);
    }
    stream.on("data", onData);
    stream.once("end", () => finish("end"));
    stream.once("close", () => finish("end"));
    stream.once("error", (err) => finish(err));
  });

  if (outcome === "watchdog" || outcome === "abort") {
    await killExec(docker, container, exec);
    if (outcome === "abort") throw opts.signal?.reason ?? new Error("exec aborted");
    // the partial output is the command's answer (as when timeout(1) stops it): drain what is in flight,
    // briefly (a process outside the killed group may hold the stream open)
    if (!ended) await Promise.race([endedPromise, new Promise((r) => setTimeout(r, WATCHDOG_DRAIN_MS).unref())]);
    detach();
    return result(124, true);
  }
  if (outcome instanceof Error) throw execError(docker, outcome, info);

  const exitCode = await exitCodeOf(docker, exec, info);
  const missingTimeout = (exitCode === 126 || exitCode === 127) && /\/usr\/bin\/timeout\b[^\n]*(not found|no such file)|exec: "\/usr\/bin\/timeout"/i.test(stderr.text() + stdout.text());
  if (wrapped && missingTimeout) {
    state.hasTimeoutBinary = false; // e.g. distroless images; retry under the host watchdog only
    const left = Math.max(1, limitSec! - Math.floor((performance.now() - started) / 1000));
    return execInContainer(docker, container, info, state, argv, { ...opts, timeoutSec: left });
  }
  // Docker Engine reports a program that cannot start as 126 with its runtime's message on stdout; podman (and a
  // shell) say 127 on stderr: the program never ran, so its output is that one message, moved to stderr
  const notStarted = exitCode === 126 && stderr.text() === "" && /^OCI runtime exec failed: .*(executable file not found|no such file or directory)/i.test(stdout.text());
  if (notStarted) return { ...result(127, false), stdout: "", stderr: stdout.text().replace(/\r\n/g, "\n") };
  // timeout(1) exits 124 after TERM, or 128+9 when it had to KILL.
  const elapsedMs = performance.now() - started;
  const timedOut = wrapped && (exitCode === 124 || (exitCode === 137 && elapsedMs >= limitSec! * 1000));
  return result(exitCode, timedOut);

  function result(exitCode: number, timedOut: boolean): ExecResult {
    return {
      stdout: stdout.text(),
      stderr: stderr.text(),
      exitCode,
      timedOut,
      truncated: stdout.truncated || stderr.truncated,
      durationMs: Math.round(performance.now() - started),
    };
  }
}

/** The exit code, from one inspect in the common case; Docker can report Running briefly after the stream ends. */
async function exitCodeOf(docker: Docker, exec: Docker.Exec, info: ExecTarget): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    let state: Docker.ExecInspectInfo;
    try {
      state = await exec.inspect();
    } catch (err) {
      throw execError(docker, err, info);
    }
    if (!state.Running && state.ExitCode !== null && state.ExitCode !== undefined) return state.ExitCode;
    if (attempt >= 50) return -1;
    await new Promise((r) => setTimeout(r, Math.min(5 * 2 ** attempt, 100)));
  }
}

/**
 * Best effort to stop an exec the host gave up on. The engine API has no "kill exec", so when the engine
 * runs on this host we SIGKILL the exec's process group by host PID, after checking (through its cgroup)
 * that the PID really belongs to this container.
 */
async function killExec(docker: Docker, container: Docker.Container, exec: Docker.Exec): Promise<void> {
  if (!engineAddress(docker).startsWith("unix://")) return;
  try {
    const { Pid: pid, Running: running } = await exec.inspect();
    if (!running || !pid || pid <= 1) return;
    const cgroup = await readHostFile(`/proc/${pid}/cgroup`, "utf8");
    if (!cgroup.includes(container.id)) return;
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, "SIGKILL");
      } catch {
        // not a group leader, or already gone
      }
    }
  } catch {
    // engine or /proc not reachable: the in-container `timeout -k` remains the safety net
  }
}

function execError(docker: Docker, err: unknown, info: ExecTarget): SandboxError {
  if (isUnreachable(err)) return unreachableError(docker, err);
  const code = statusCode(err);
  if (code === 404) return new SandboxError(`sandbox ${info.name} no longer exists`, "exec_failed");
  if (code === 409 || code === 500) return new SandboxError(`sandbox ${info.name} is not running: ${engineMessage(err)}`, "exec_failed");
  return engineError(docker, err, "exec_failed", `exec in ${info.name} failed`);
}
