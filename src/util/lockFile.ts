// Lock files with an owner: created exclusively (O_EXCL), so of two processes that start together exactly one
// gets it; the file names its owner (pid, host, process start time, user). Another's lock is taken over only when
// that owner is provably gone: same host, and the pid is dead or now belongs to a process started at another
// time (a reused pid). A lock from another host, or one that cannot be read, is never taken over. Used for job
// dirs, rollout dirs and the dataset cache.
import { readFileSync, unlinkSync } from "node:fs";
import { open, readFile, rm } from "node:fs/promises";
import os from "node:os";
import { z } from "zod";
import { processGone, processStartTime } from "./process.js";

export const LockOwner = z.object({
  pid: z.number().int().positive(),
  host: z.string().min(1),
  /** /proc/<pid>/stat field 22 (clock ticks after boot); null where there is no /proc. */
  start: z.string().nullable(),
  user: z.string(),
  created_at: z.string(),
});
export type LockOwner = z.infer<typeof LockOwner>;

/** This process as a lock owner. */
export function currentOwner(): LockOwner {
  let user = "";
  try {
    user = os.userInfo().username;
  } catch {
    user = String(process.getuid?.() ?? "");
  }
  return { pid: process.pid, host: os.hostname(), start: processStartTime(process.pid) ?? null, user, created_at: new Date().toISOString() };
}

export type Verdict = "alive" | "gone" | "foreign" | "unreadable";

/** Whether a lock's owner still runs; "gone" only when that is certain. */
export function judgeOwner(owner: LockOwner | null): Verdict {
  if (!owner) return "unreadable";
  if (owner.host !== os.hostname()) return "foreign";
  return processGone(owner.pid, owner.start) ? "gone" : "alive";
}

/** The owner a lock file names: the JSON of LockOwner, or a bare pid (an older tmax's lock); null when unreadable. */
export function parseOwner(text: string): LockOwner | null {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed) && Number(trimmed) > 0) return { pid: Number(trimmed), host: os.hostname(), start: null, user: "", created_at: "" };
  try {
    const parsed = LockOwner.safeParse(JSON.parse(trimmed));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

async function createExclusive(file: string, owner: LockOwner): Promise<boolean> {
  let handle;
  try {
    handle = await open(file, "wx", 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  }
  try {
    await handle.writeFile(`${JSON.stringify(owner)}\n`);
  } finally {
    await handle.close();
  }
  return true;
}

/** Either the lock (and how to release it), or who holds it and whether they still run. */
export type LockAttempt = { release: () => Promise<void> } | { owner: LockOwner | null; verdict: Exclude<Verdict, "gone"> };

/**
 * Tries once to take the lock `file`, taking it over from an owner that is gone. The release (idempotent) removes
 * the file only while it is still this process's; it also runs at exit, and on SIGINT/SIGTERM when nothing else
 * handles those signals.
 */
export async function tryLock(file: string): Promise<LockAttempt> {
  const me = currentOwner();
  const mine = `${JSON.stringify(me)}\n`;
  for (let tries = 0; tries < 200; tries++) {
    if (await createExclusive(file, me)) return { release: releaser(file, mine) };
    const seen = await readFile(file, "utf8").catch(() => null);
    if (seen === null) continue; // released meanwhile: try again
    const owner = parseOwner(seen);
    const verdict = judgeOwner(owner);
    if (verdict !== "gone") return { owner, verdict };
    await takeOver(file, seen, me);
  }
  throw new Error(`could not take the lock ${file} (it keeps changing); try again`);
}

/** "by process 123 of alice (since …)": who holds a lock, for messages. */
export function describeOwner(owner: LockOwner | null, verdict: Verdict): string {
  if (!owner) return "by a lock that cannot be read (a run that is starting, or one that died while writing it)";
  const who = `process ${owner.pid}${owner.user ? ` of ${owner.user}` : ""}`;
  return verdict === "foreign" ? `by ${who} on host ${owner.host}, which tmax cannot check from here` : `by ${who}${owner.created_at ? ` (since ${owner.created_at})` : ""}`;
}

/** The guard file a takeover of lock `file` holds for a few milliseconds (beside the lock). */
export const takeoverGuard = (file: string): string => `${file}.takeover`;

/**
 * Removes a lock judged stale, if it is still that one. Takeovers go one at a time through a guard file (also
 * created exclusively), so of two runs that judged the same lock stale, the second finds the first's fresh lock
 * instead and leaves it. A guard whose holder died (within the few milliseconds it is held) is removed.
 */
async function takeOver(file: string, stale: string, me: LockOwner): Promise<void> {
  const guard = takeoverGuard(file);
  if (!(await createExclusive(guard, me))) {
    const held = await readFile(guard, "utf8").catch(() => null);
    if (held !== null && judgeOwner(parseOwner(held)) === "gone") await rm(guard, { force: true });
    else await new Promise((r) => setTimeout(r, 20));
    return;
  }
  try {
    if ((await readFile(file, "utf8").catch(() => null)) === stale) await rm(file, { force: true });
  } finally {
    await rm(guard, { force: true });
  }
}

function releaser(file: string, mine: string): () => Promise<void> {
  let released = false;
  const removeIfMine = () => {
    if (released) return;
    released = true;
    try {
      if (readFileSync(file, "utf8") === mine) unlinkSync(file);
    } catch {
      // already gone
    }
  };
  const onSignal = (signal: NodeJS.Signals) => {
    removeIfMine();
    detach();
    process.kill(process.pid, signal); // the default action, now that the lock is gone
  };
  // take a signal only when nobody else does (the CLI's own handlers exit through process.exit: "exit" covers that)
  const signals = (["SIGINT", "SIGTERM"] as const).filter((s) => process.listenerCount(s) === 0);
  const detach = () => {
    process.off("exit", removeIfMine);
    for (const s of signals) process.off(s, onSignal);
  };
  process.on("exit", removeIfMine);
  for (const s of signals) process.on(s, onSignal);
  return async () => {
    removeIfMine();
    detach();
  };
}
