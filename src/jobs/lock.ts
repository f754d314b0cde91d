// One live runner per job dir (and per rollout --out dir): the owner lock of util/lockFile.ts as `<dir>/.lock`.
// A lock from another host, or one that cannot be read, is never taken over: the error says which file to remove.
import path from "node:path";
import { describeOwner, takeoverGuard, tryLock } from "../util/lockFile.js";

export { currentOwner, LockOwner } from "../util/lockFile.js";

export const LOCK_FILE = ".lock";

/** Whether a dir entry is the lock's own (the lock or its takeover guard), not content of the job. */
export const isLockEntry = (name: string): boolean => name === LOCK_FILE || name === takeoverGuard(LOCK_FILE);

/**
 * Takes the job dir's lock or throws one line saying who holds it and how to force it. The returned function
 * releases it (idempotent); the lock is also released when the process exits, and on SIGINT/SIGTERM when nothing
 * else handles those signals.
 */
export async function lockJobDir(jobDir: string): Promise<() => Promise<void>> {
  const file = path.join(jobDir, LOCK_FILE);
  const got = await tryLock(file);
  if ("release" in got) return got.release;
  throw new Error(`job dir ${jobDir} is in use ${describeOwner(got.owner, got.verdict)}; if that run is over, remove ${file} and run again`);
}
