// The tmax CLI as a user runs it: a child process (`node --import tsx src/cli/main.ts …`), its streams as pipes.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import path from "node:path";
import { ROOT } from "./env.js";

export const MAIN = path.join(ROOT, "src/cli/main.ts");

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts tmax; `env` is added to this process's environment (keys set to undefined are removed). */
export function spawnTmax(args: string[], env: Record<string, string | undefined> = {}, cwd = ROOT): ChildProcessWithoutNullStreams {
  const merged: Record<string, string | undefined> = { ...process.env, ...env };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  return spawn(process.execPath, ["--import", "tsx", MAIN, ...args], { cwd, env: merged as NodeJS.ProcessEnv });
}

/** Collects a started tmax's output until it exits. */
export function finished(child: ChildProcessWithoutNullStreams): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  return new Promise((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })));
}

/** Runs tmax to its end. */
export function runTmax(args: string[], env: Record<string, string | undefined> = {}, cwd = ROOT): Promise<CliResult> {
  const child = spawnTmax(args, env, cwd);
  child.stdin.end();
  return finished(child);
}
