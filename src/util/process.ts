// Is a process still the one we knew? Its pid alone is not enough: pids are reused, so the start time
// (/proc/<pid>/stat field 22) tells a new process with an old pid apart. Used by lock files and container owners.
import { readFileSync } from "node:fs";

/** Start time of `pid` in clock ticks after boot, or undefined when it does not exist (or no /proc). */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // the command name (field 2) may hold spaces and parentheses: fields after the last ')' are fixed
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19]; // field 22 overall: starttime
  } catch {
    return undefined;
  }
}

/** True while `pid` exists (also when it belongs to another user). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
  }
}

/**
 * Whether the process once seen as `pid` (started at `start`, when known) has certainly ended: the pid is dead,
 * or it now belongs to a process started at another time (a reused pid).
 */
export function processGone(pid: number, start?: string | null): boolean {
  if (!pidAlive(pid)) return true;
  const now = processStartTime(pid);
  return Boolean(start && now && start !== now);
}
