// test.sh under watch: the verifier's command when agent processes may still be alive (shared isolation, and
// after a kill or in a snapshot as a second line). It detects a reward the verifier did not write. Every
// signal here is one no honest solution can trigger, so a trial with any of them is refused (reward 0 in
// every integrity mode but off). See docs/reward-integrity.md ("Forged rewards").
//
// One bash process, builtins only (never a tool from the agent-writable PATH; the only external programs are
// /bin/rm, /bin/mkdir and /bin/mv to place the tests, as everywhere in the verifier, and /bin/bash for test.sh):
// - before anything, every process alive is the agent's (pid + start time); the exec is its own session, so
//   every process of that session is the verifier's (a process cannot join another session); a new process
//   takes the class of its parent when seen, and is "unknown" when its parent is already gone;
// - a sampler walks /proc during the tests and the settle delay: an agent process with its cwd or an open
//   file under /tests or /logs/verifier (`[[ /proc/P/fd/N -ef FILE ]]` follows the magic link), or an
//   inotify watch on /, /logs, /tests or /logs/verifier, is a forgery;
// - when test.sh returns, the reward files are opened (held) and read; after a delay they are checked again:
//   other bytes, another inode, or an mtime later than test.sh's exit is a forgery;
// - the test files placed in /tests must not change while the tests run (mtime later than the start, gone);
//   the host compares their bytes with the task's too (see verify()).
// The output is numbered lines on the exec's own stdout. A root process in the container can write into that
// pipe (through /proc/<pid>/fd/1) but cannot take lines back: a duplicate, a gap or a missing END is a forgery.

import { readFileSync } from "node:fs";
import type { Sandbox } from "../sandbox/types.js";

/** A signal of a reward the verifier did not write. */
export interface ForgerySignal {
  signal: string;
  detail: string;
}

export interface WatchedRun {
  /** test.sh's exit code (as `bash /tests/test.sh` returned it). */
  exitCode: number;
  timedOut: boolean;
  /** Forgeries seen (refuse). */
  forged: ForgerySignal[];
  /** Processes of unknown origin seen under /tests or /logs/verifier (flag only: an orphaned test daemon looks the same). */
  unknown: ForgerySignal[];
  samples: number;
  /**
   * The reward files as the runner took them at test.sh's exit, before anything could tell it ended (absent:
   * no such file then; "big": over 64 KiB; "special": not a regular file). This is the reward; the files are
   * never read again. Undefined when the runner did not get that far (a timeout, a broken monitor).
   */
  rewardFiles?: Record<string, Buffer | "big" | "special">;
}

/** How long after test.sh returns the reward files must stay as they were (a writer still active is seen). */
export const SETTLE_SEC = Number(process.env.TMAX_REWARD_SETTLE_SEC ?? "1.5");
/** The sampler's period (it also costs a walk of /proc: small enough to catch a process that lingers). */
const TICK_SEC = 0.02;
const MAX_LINES = 64;

const SCRIPT = readFileSync(new URL("../../assets/verifier-watch.sh", import.meta.url), "utf8");

export interface WatchInput {
  sandbox: Sandbox;
  /** Where the tests were uploaded (a random dir at /) and the uploaded dir's name in it. */
  staging: string;
  base: string;
  env: Record<string, string>;
  timeoutSec: number;
  signal?: AbortSignal;
  /** test.sh's stdout and stderr to test-stdout.txt and test-stderr.txt apart (train), else merged (eval). */
  streamsApart?: boolean;
}

/**
 * Places the tests (staging → /tests) and runs test.sh under watch, in one exec of its own (never through the
 * agent container's resident executor, whose pipes the agent can reach).
 */
export async function runWatched(input: WatchInput, nonce: string): Promise<WatchedRun> {
  const { sandbox, timeoutSec } = input;
  const work = `/.tmax-watch-${nonce}`;
  const limit = Math.max(1, Math.ceil(timeoutSec));
  const run = await sandbox.exec(
    ["/bin/bash", "--noprofile", "--norc", "-c", SCRIPT, "tmax-verifier", work, input.staging, input.base, String(limit), String(SETTLE_SEC), String(TICK_SEC), input.streamsApart ? "1" : "0"],
    // the exec's own limit is a backstop: the sampler ends test.sh at `limit` (TERM, then KILL 10 s later)
    { cwd: sandbox.workdir, env: input.env, timeoutSec: limit + SETTLE_SEC + 60, signal: input.signal, direct: true },
  );
  return parseWatch(run.stdout, run.exitCode, run.timedOut);
}

/** Reads the numbered lines; anything out of order, repeated or missing is a forgery of the monitor's output. */
export function parseWatch(stdout: string, exitCode: number, execTimedOut: boolean): WatchedRun {
  const forged: ForgerySignal[] = [];
  const unknown: ForgerySignal[] = [];
  const next = { M: 1, S: 1, T: 1 };
  let rc: number | undefined;
  let samples = 0;
  let stopAt = -1;
  let samplerEndAt = -1;
  let end = false;
  let runnerEnd = false;
  let timedOut = execTimedOut;
  let failure: string | undefined;
  let rewardFiles: Record<string, Buffer | "big" | "special"> | undefined;
  let index = 0;
  const bad = (why: string) => forged.length < MAX_LINES && forged.push({ signal: "monitor", detail: why });
  for (const raw of stdout.split("\n")) {
    if (!raw.startsWith("\x02")) continue;
    index++;
    const m = /^\x02([MST])(\d+) (\S+)(?: (.*))?$/.exec(raw);
    if (!m) {
      bad("a line not of the verifier's monitor");
      continue;
    }
    const [, who, seqText, kind, rest = ""] = m;
    const seq = Number(seqText);
    const stream = who as "M" | "S" | "T";
    if (seq !== next[stream]) {
      bad(`monitor line ${who}${seq} out of sequence (expected ${who}${next[stream]})`);
      next[stream] = Math.max(next[stream], seq + 1);
      continue;
    }
    next[stream] = seq + 1;
    if (kind === "FORGED" && who !== "S") {
      const [signal, ...detail] = rest.split(" ");
      forged.push({ signal, detail: detail.join(" ") });
    } else if (who === "T") {
      if (kind === "REWARD") {
        const [name = "", body = ""] = rest.split(" ");
        rewardFiles ??= {};
        if ((name === "reward.txt" || name === "reward.json") && !(name in rewardFiles)) {
          rewardFiles[name] = body === "big" || body === "special" ? body : /^(?:[0-9a-f]{2})*$/.test(body) ? Buffer.from(body, "hex") : "special";
        } else bad(`a reward line not of the verifier's runner: ${JSON.stringify(rest.slice(0, 40))}`);
      } else if (kind === "EXIT") {
        rc = Number(rest);
        rewardFiles ??= {}; // taken (none there) before the runner reaped test.sh
      }
      else if (kind === "END") runnerEnd = true;
    } else if (who === "M") {
      if (kind === "STOP") stopAt = index;
      else if (kind === "END") end = true;
      else if (kind === "FAIL") failure = rest;
    } else {
      if (kind === "agent") forged.length < MAX_LINES && forged.push({ signal: "agent-process", detail: rest });
      else if (kind === "unknown") unknown.length < MAX_LINES && unknown.push({ signal: "unknown-process", detail: rest });
      else if (kind === "TIMEOUT") timedOut = true;
      else if (kind === "END") {
        samplerEndAt = index;
        samples = Number(rest) || 0;
      }
    }
  }
  if (failure) throw Object.assign(new Error(`the verifier could not start: ${failure}`), { forged });
  if (!timedOut) {
    if (!end || !runnerEnd || rc === undefined) bad(`the verifier's monitor did not finish (exit ${exitCode})`);
    if (samplerEndAt < 0) bad("the sampler did not finish");
    else if (stopAt < 0 || samplerEndAt < stopAt) bad("the sampler stopped before it was told to");
  }
  return { exitCode: rc ?? exitCode, timedOut, forged, unknown, samples, ...(rewardFiles ? { rewardFiles } : {}) };
}
