// Persistent shell semantics on top of one-shot execs: each command runs in a fresh bash that first
// restores the cwd and exported environment saved by the previous command, and saves them again after.
import type { ExecResult, Sandbox } from "../sandbox/types.js";

const STATE_DIR = "/tmp/.tmax-shell";

// $1 is the command text; it is moved into a variable so that the command itself sees no positional args.
const WRAPPER = [
  `__tmax_cmd=$1; shift`,
  `cd "$(cat ${STATE_DIR}/cwd 2>/dev/null)" 2>/dev/null || true`,
  `. ${STATE_DIR}/env 2>/dev/null || true`,
  `eval "$__tmax_cmd"`,
  `__tmax_ec=$?`,
  `pwd > ${STATE_DIR}/cwd 2>/dev/null`,
  `export -p > ${STATE_DIR}/env 2>/dev/null`,
  `exit $__tmax_ec`,
].join("\n");

export interface Shell {
  run(command: string, opts?: { signal?: AbortSignal }): Promise<ExecResult>;
}

export interface ShellOptions {
  timeoutSec: number;
  maxOutputBytes: number;
  /**
   * Send the command's stderr into its stdout, in the order written (eval on docker: Harbor's docker exec
   * hands the agent one merged stream, so errors appear where they happened; see mergesStderr in loop.ts).
   */
  mergeStderr?: boolean;
  /** Where the first command runs (default: the sandbox's workdir). */
  startDir?: string;
}

/** Starts a persistent shell in `startDir` (default: the sandbox's workdir). */
export async function openShell(sandbox: Sandbox, opts: ShellOptions): Promise<Shell> {
  const init = await sandbox.exec(
    // `cd` in bash keeps a start dir that is a symlink (e.g. /app) as the logical cwd
    ["bash", "-c", `mkdir -p ${STATE_DIR} && cd -- "$1" && pwd > ${STATE_DIR}/cwd && export -p > ${STATE_DIR}/env`, "tmax-shell", opts.startDir ?? "."],
    { cwd: sandbox.workdir, timeoutSec: 30 },
  );
  if (init.exitCode !== 0) {
    const why = (init.stderr || init.stdout).trim().split("\n")[0];
    throw new Error(`could not start a shell in the sandbox (exit ${init.exitCode}): ${why}`);
  }
  return {
    run: (command, runOpts) =>
      sandbox.exec(["bash", "-c", opts.mergeStderr ? `exec 2>&1\n${WRAPPER}` : WRAPPER, "tmax-shell", command], {
        cwd: sandbox.workdir,
        timeoutSec: opts.timeoutSec,
        maxOutputBytes: opts.maxOutputBytes,
        signal: runOpts?.signal,
      }),
  };
}
