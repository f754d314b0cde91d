// Process-wide registry of live sandboxes, so that Ctrl-C (or a SIGTERM from a scheduler) never leaves
// containers behind. Backends call track() on create and untrack() once a sandbox is removed.
import type { PruneFilter } from "./owner.js";
import type { SandboxBackend } from "./types.js";

/** What the registry needs from a sandbox. */
export interface Removable {
  readonly id: string;
  remove(): Promise<void>;
}

const live = new Set<Removable>();

/**
 * A selection's leftovers (see prunable in owner.ts: owner gone, one job, or all): containers first, then the
 * verifier snapshot images (which a container may still use).
 */
export async function pruneLeftovers(backend: Pick<SandboxBackend, "prune" | "pruneSnapshots">, filter: PruneFilter = {}, opts: { attempts?: number } = {}): Promise<{ containers: number; images: number }> {
  // `attempts`: after an engine restart the first request may meet a connection the old engine dropped
  for (let attempt = 1; ; attempt++) {
    try {
      const containers = await backend.prune(filter);
      const images = backend.pruneSnapshots ? await backend.pruneSnapshots(filter) : 0;
      return { containers, images };
    } catch (err) {
      if (attempt >= (opts.attempts ?? 1)) throw err;
      await new Promise((r) => setTimeout(r, 500 * attempt));
    }
  }
}

export function track(sandbox: Removable): void {
  live.add(sandbox);
}

export function untrack(sandbox: Removable): void {
  live.delete(sandbox);
}

export function trackedCount(): number {
  return live.size;
}

/**
 * Removes every tracked sandbox in parallel. Gives up waiting after `deadlineMs` (removals keep running in
 * the background) and reports how many were confirmed removed and how many were still pending or failed.
 */
export async function removeAllTracked(deadlineMs = 5000): Promise<{ removed: number; pending: number }> {
  const all = [...live];
  let removed = 0;
  const removals = all.map((sandbox) =>
    sandbox.remove().then(
      () => {
        removed++;
        live.delete(sandbox);
      },
      () => undefined,
    ),
  );
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, deadlineMs);
    timer.unref();
  });
  await Promise.race([Promise.all(removals), deadline]);
  clearTimeout(timer);
  return { removed, pending: all.length - removed };
}

/**
 * What stops a command early: a signal, or its output gone (EPIPE/EIO on stdout or stderr: `tmax eval | head`,
 * a closed terminal). Each has its documented exit code (128 + the signal's number; SIGPIPE's for lost output).
 */
export type Fault = "SIGINT" | "SIGTERM" | "SIGHUP" | "EPIPE";
export const FAULT_EXIT_CODES: Readonly<Record<Fault, number>> = { SIGHUP: 129, SIGINT: 130, EPIPE: 141, SIGTERM: 143 };

export interface SignalCleanupOptions {
  /** Overall time allowed for removals before exiting anyway (default 5 s). */
  deadlineMs?: number;
  /** How long a command may take to wind down after the stop (trials dropped, files written; default 10 s). */
  drainMs?: number;
  /** Where the one-line notices go (default stderr). */
  log?: (line: string) => void;
  /** Replaces process.exit (tests). */
  exit?: (code: number) => void;
  /** The streams watched for EPIPE (default process.stdout and process.stderr; tests pass their own). */
  streams?: NodeJS.WriteStream[];
}

let installed: (() => void) | undefined;
let stopController = new AbortController();
const stopListeners = new Set<(fault: Fault) => void>();
const draining = new Set<Promise<unknown>>();

/** True while installSignalCleanup's handlers are in place. */
export function cleanupInstalled(): boolean {
  return installed !== undefined;
}

/** Aborted at the first fault (its reason is the Fault): commands stop starting work and wind down. */
export function stopSignal(): AbortSignal {
  return stopController.signal;
}

/** Called once at the first fault, before the wind-down (e.g. to print how to resume). Returns an unsubscribe. */
export function onStop(listener: (fault: Fault) => void): () => void {
  stopListeners.add(listener);
  return () => stopListeners.delete(listener);
}

/**
 * The command's own work: after a fault the exit waits for it (up to drainMs), so that what it finished is
 * written and its sandboxes are removed by their own paths before the process goes.
 */
export function whileRunning<T>(work: Promise<T>): Promise<T> {
  const settled = work.then(
    () => undefined,
    () => undefined,
  );
  draining.add(settled);
  void settled.then(() => draining.delete(settled));
  return work;
}

/** A stream whose reader is gone: later writes are dropped instead of raising EPIPE again. */
function silence(stream: NodeJS.WriteStream): void {
  (stream as unknown as { write: (...a: unknown[]) => boolean }).write = (...args: unknown[]) => {
    const cb = args.find((a) => typeof a === "function") as (() => void) | undefined;
    if (cb) queueMicrotask(cb);
    return true;
  };
}

/**
 * On SIGINT, SIGTERM, SIGHUP, or EPIPE on stdout/stderr: aborts stopSignal(), tells the onStop listeners, waits
 * for the command's work (whileRunning, up to drainMs), removes every sandbox still tracked, then exits with the
 * fault's code (FAULT_EXIT_CODES). A second signal while that runs exits at once; lost output only silences the
 * stream. Installing twice keeps the first installation; the returned function uninstalls.
 */
export function installSignalCleanup(opts: SignalCleanupOptions = {}): () => void {
  if (installed) return installed;
  const log = opts.log ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  const streams = opts.streams ?? [process.stdout, process.stderr];
  let fault: Fault | undefined;
  const onFault = (next: Fault) => {
    if (fault) {
      if (next === "EPIPE") return; // the other stream closing too is not a request to hurry
      log(`tmax: ${next} again, exiting without waiting for cleanup`);
      exit(FAULT_EXIT_CODES[fault]);
      return;
    }
    fault = next;
    for (const listener of stopListeners) {
      try {
        listener(next);
      } catch {
        // a listener that cannot print (its stream gone) does not stop the cleanup
      }
    }
    stopController.abort(next);
    const deadline = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());
    void Promise.race([Promise.all([...draining]), deadline(opts.drainMs ?? 10_000)])
      .then(async () => {
        const count = live.size;
        if (count > 0) log(`tmax: ${next}, removing ${count} sandbox${count === 1 ? "" : "es"}${next === "EPIPE" ? "" : " (press Ctrl-C again to skip)"}`);
        const { pending } = await removeAllTracked(opts.deadlineMs ?? 5000);
        if (pending > 0) log(`tmax: ${pending} sandbox(es) may be left; run \`tmax sandbox prune\``);
      })
      .finally(() => exit(FAULT_EXIT_CODES[next]));
  };
  const handlers = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((sig) => [sig, () => onFault(sig)] as const);
  for (const [sig, h] of handlers) process.on(sig, h);
  const onStreamError = (stream: NodeJS.WriteStream) => (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE" && err.code !== "EIO") throw err;
    silence(stream);
    onFault("EPIPE");
  };
  const streamHandlers = streams.map((s) => [s, onStreamError(s)] as const);
  for (const [s, h] of streamHandlers) s.on("error", h);
  const uninstall = () => {
    for (const [sig, h] of handlers) process.off(sig, h);
    for (const [s, h] of streamHandlers) s.off("error", h);
    stopController = new AbortController();
    installed = undefined;
  };
  installed = uninstall;
  return uninstall;
}
