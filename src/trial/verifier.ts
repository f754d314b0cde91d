// The verifier phase: tests copied in only now, run where the agent's leftover processes cannot reach (or, in
// Harbor's shared mode, under watch), the reward parsed strictly. The threat model and the choices are in
// docs/reward-integrity.md.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { lstat, mkdir, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { TRAIN_MAX_OUTPUT_BYTES } from "../agent/observation.js";
import type { FileChange, Sandbox } from "../sandbox/types.js";
import { SandboxError, SnapshotTooLargeError } from "../sandbox/types.js";
import { passedEnv, resolveEnvTemplates } from "../tasks/harbor.js";
import type { Task } from "../tasks/types.js";
import { withDeadline } from "../util/deadline.js";
import { cappedBuffer } from "../sandbox/bytes/execOutput.js";
import { addFindings, classifyPath, tamperReport, type IntegrityMode, type TamperReport } from "./tamper.js";
import { checkToolchain } from "./toolchain.js";
import { runWatched, type ForgerySignal } from "./verifierRun.js";

/**
 * Where the verifier runs:
 * - `shared`: the agent's container as is, agent processes alive (Harbor's behaviour, the default of eval and
 *   run); test.sh runs under watch (verifierRun.ts) so a reward the verifier did not write is refused;
 * - `snapshot`: a fresh container from a commit of the agent's filesystem (taken frozen, with the change scan),
 *   in the agent container's network namespace (services the agent started answer on localhost); no agent
 *   process runs in it (rollout's default on docker);
 * - `kill`: the agent's container after every process but PID 1 was stopped and killed.
 */
export type VerifierIsolation = "snapshot" | "kill" | "shared";
export const VERIFIER_ISOLATIONS: readonly VerifierIsolation[] = ["snapshot", "kill", "shared"];

/** What verify() tells the trial besides the rewards. */
export interface VerifyOutcome {
  rewards: Record<string, number>;
  /** The isolation actually used (a failed snapshot falls back to kill, noted in `note`). */
  isolation: VerifierIsolation;
  hardened: boolean;
  note?: string;
  /** Files the agent added earlier in PATH that shadowed a command of the image; moved aside for the verifier. */
  quarantined: string[];
  /** test.sh's streams apart (with `streamsApart`): what open-instruct's test report shows. */
  testRun?: TestRunOutput;
}

export interface TestRunOutput {
  stdout: string;
  stderr: string;
  exitCode: number;
  timeoutSec: number;
}

export class VerifierError extends Error {
  /** Set on a timeout with `streamsApart`: the partial output. */
  testRun?: TestRunOutput;
  constructor(readonly type: string, message: string) {
    super(message);
    this.name = type;
  }
}
/** PATH for tmax's own commands in the sandbox: system dirs only, /usr/local never first. */
export const HARNESS_PATH = "/usr/bin:/bin:/usr/sbin:/sbin";
export const HARNESS_ENV: Record<string, string> = { PATH: HARNESS_PATH, LC_ALL: "C" };
const BASH = "/bin/bash";
const RM = "/bin/rm";
const MKDIR = "/bin/mkdir";
const MV = "/bin/mv";
/** Reward files larger than this are refused (a reward is a number or a small dict). */
const MAX_REWARD_BYTES = 64 * 1024;

/** A harness-internal script: absolute bash, no rc files, fixed PATH. */
export function harnessExec(sandbox: Sandbox, script: string, timeoutSec = 60, direct = false) {
  return sandbox.exec([BASH, "--noprofile", "--norc", "-c", script], { env: HARNESS_ENV, timeoutSec, cwd: "/", direct });
}

/**
 * Stops (SIGSTOP, so nothing respawns) then kills every process but PID 1 and this script, with bash
 * builtins only; repeats until a round finds none (20 rounds and 5 s at least before it gives up). Zombies
 * and exiting processes (no memory left) do not count (PID 1 may not reap them).
 */
export const KILL_ALL_SCRIPT = `
self=$$; parent=$PPID
# at least 20 rounds, and for 5 s: on a loaded host a killed process keeps its memory a while before it exits
for ((round = 1; round <= 20 || SECONDS < 5; round++)); do
  pids=""
  for d in /proc/[0-9]*; do
    p=\${d#/proc/}
    case "$p" in 1|"$self"|"$parent") continue ;; esac
    st=""; mm=""
    while read -r k v _; do case "$k" in State:) st=$v ;; VmSize:) mm=1 ;; esac; done < "$d/status" 2>/dev/null
    case "$st" in ""|Z|X) continue ;; esac
    # a process without memory (VmSize) is already exiting: signalled again, but it does not hold the loop
    if [ -z "$mm" ]; then kill -KILL "$p" 2>/dev/null; continue; fi
    pids="$pids $p"
  done
  [ -z "$pids" ] && exit 0
  for p in $pids; do kill -STOP "$p" 2>/dev/null; done
  for p in $pids; do kill -KILL "$p" 2>/dev/null; done
done
echo "processes keep appearing after $((round - 1)) rounds in \${SECONDS}s" >&2
exit 1
`;

export interface VerifyInput {
  task: Task;
  sandbox: Sandbox;
  trialDir: string;
  mult: number;
  /** A floor under the task's verifier timeout (train: training's 600 s). */
  minTimeoutSec?: number;
  /** Host variables `${NAME}` templates in [verifier.env] may expand (--pass-env); nothing else is read. */
  passEnv?: string[];
  /** Variables of the job (--ve) over the task's [verifier.env] (Harbor: the job's win). */
  extraEnv?: Record<string, string>;
  isolation: VerifierIsolation;
  /** Apply the Python/pytest hardening of TB-style test.sh (unless the task opts out). */
  harden: boolean;
  /** The tamper report and the watch: strict, flag, or off (no report, test.sh run plainly as Harbor does). */
  integrity: IntegrityMode;
  /** Receives the tamper report as soon as it exists (also when the verifier fails later); later findings are added to the same object. */
  onTamper?: (tamper: TamperReport) => void;
  signal?: AbortSignal;
  /** Called with the sandbox the verifier ran in, after it ran (also on failure), before a snapshot is removed. */
  collect?: (where: Sandbox) => Promise<void>;
  /**
   * train: run test.sh as open-instruct's env does, stdout and stderr apart (each capped at 1,000,000 bytes),
   * returned in `testRun` and written to verifier/test-stdout.txt and test-stderr.txt of the trial.
   */
  streamsApart?: boolean;
  /** After collect, remove /tests and the verifier's logs from the agent's container (a next step's agent must not see them, nor its scan count them). */
  clearAfter?: boolean;
}

/**
 * Scans the agent's changes (frozen where the engine can pause), then runs the task's tests and returns the
 * parsed rewards. The tamper report goes to `onTamper`. Cleans up any snapshot it made.
 */
export async function verify(input: VerifyInput): Promise<VerifyOutcome> {
  const { task, trialDir, mult, signal, integrity } = input;
  const timeoutSec = Math.max(task.config.verifierTimeoutSec * mult, input.minTimeoutSec ?? 0);
  let isolation = input.isolation;
  const notes: string[] = [];
  let target = input.sandbox;
  let snapshot: Sandbox | undefined;
  let ran = false;
  let tamper: TamperReport | undefined;
  let changes: FileChange[] | undefined;
  let scanned = false;
  const flags: ForgerySignal[] = [];
  let frozen: boolean | undefined;

  // the change scan: the tamper report, and the list the quarantine works from
  const scan = async () => {
    scanned = true;
    ({ tamper, changes } = await scanChanges(input.sandbox, integrity));
    if (tamper) input.onTamper?.(tamper);
  };
  const frozenScan = async () => {
    if (!input.sandbox.freeze) {
      frozen = false;
      return scan();
    }
    const r = await input.sandbox.freeze(scan);
    frozen = r.frozen;
    if (!r.frozen) notes.push(`the engine could not pause the container (${r.why}); the scan ran with the agent's processes alive`);
  };

  // Where the tests read the tests from until they move to /tests (a random name: the agent cannot prepare it).
  const staging = `/.tmax-verifier-${randomBytes(12).toString("hex")}`;
  try {
    if (isolation === "snapshot") {
      if (!input.sandbox.snapshot) {
        isolation = "kill";
        notes.push(`the ${input.sandbox.backend} backend cannot snapshot; agent processes were killed instead`);
      } else {
        try {
          snapshot = await input.sandbox.snapshot({
            beforeCommit: scan,
            onFreeze: (ok, why) => {
              frozen = ok;
              // the agent could act between the scan and the commit: not vouched for under strict
              if (!ok) flags.push({ signal: "scan-not-frozen", detail: `the engine could not pause the container (${why}); the scan and the commit ran with the agent's processes alive` });
            },
          });
          target = snapshot;
        } catch (e) {
          isolation = "kill";
          if (e instanceof SnapshotTooLargeError) flags.push({ signal: "snapshot-too-large", detail: e.message });
          notes.push(`snapshot ${e instanceof SnapshotTooLargeError ? "refused" : "failed"} (${(e as Error).message.split("\n")[0]}); agent processes were killed instead`);
        }
      }
    }
    if (isolation === "kill" && input.sandbox.backend === "local") {
      isolation = "shared"; // never kill processes on the host
      notes.push("the local backend runs on the host: nothing is killed");
    }
    if (isolation === "kill") {
      // a fresh exec: the kill takes the resident executor down too; later commands fall back to an exec each
      const killed = await harnessExec(target, KILL_ALL_SCRIPT, 60, true);
      if (killed.exitCode !== 0) throw new VerifierError("VerifierError", `could not stop the agent's processes: ${(killed.stderr || killed.stdout).trim().split("\n")[0]}`);
      // nothing of the agent's runs any more: the scan needs no freeze
      if (!scanned) await scan();
    }
    if (isolation === "shared" && !scanned) await frozenScan();
    if (tamper) {
      tamper.verifier_isolation = isolation;
      if (frozen !== undefined) tamper.frozen = frozen;
    }

    const hardening = input.harden ? hardeningEnv(task) : null;
    const env = { ...(hardening ?? {}), ...resolveEnvTemplates(task.config.verifierEnv ?? {}, passedEnv(input.passEnv)), ...(input.extraEnv ?? {}) }; // [verifier.env] wins over hardening, --ve over both

    // The toolchain against the image, before any harness command runs where the tests will (toolchain.ts)
    const linked = tamper ? await toolchainCheck(input, target, isolation, env, tamper, changes ?? []) : [];

    // Commands the agent added earlier in PATH than the image's own (a fake python3, pytest, cmp …) go aside:
    // test.sh keeps the task's PATH, but not the agent's shadows. Only where no agent process survives (in
    // shared mode they are Harbor's: flagged by the tamper report, never moved).
    const quarantined = isolation === "shared" ? [] : await quarantineShadows(target, [...(changes ?? []), ...linked]);
    if (tamper) tamper.quarantined = quarantined;

    if (tamper) tamper.verifier_hardened = hardening !== null;
    const base = path.basename(task.testsDir);
    const apart = input.streamsApart === true;
    ran = true;
    let exitCode: number;
    let timedOut: boolean;
    let rewardFiles: Record<string, Buffer | "big" | "special"> | undefined;
    if (integrity === "off" || target.backend === "local") {
      // Harbor's plain run: fresh /logs/verifier and /tests, the tests moved into place, test.sh (also on the
      // local backend: its processes are this host's, there is nothing to watch them against)
      const prep = await harnessExec(target, `${RM} -rf /tests /logs/verifier ${staging} && ${MKDIR} -p /logs/verifier`, 60, isolation === "shared");
      if (prep.exitCode !== 0) throw new VerifierError("VerifierError", `could not prepare /tests and /logs/verifier: ${prep.stderr.trim().split("\n")[0]}`);
      await target.upload(task.testsDir, staging);
      const place = await harnessExec(target, `${MV} ${staging}/${shellQuote(base)} /tests && ${RM} -rf ${staging}`, 60, isolation === "shared");
      if (place.exitCode !== 0) throw new VerifierError("VerifierError", `could not move the tests to /tests: ${place.stderr.trim().split("\n")[0]}`);
      // test.sh runs with the task's own PATH (its tools may live in /usr/local/bin); only the outer bash is absolute.
      const redirect = apart ? "> /logs/verifier/test-stdout.txt 2> /logs/verifier/test-stderr.txt" : "> /logs/verifier/test-stdout.txt 2>&1";
      // (in the agent's container, an exec of its own: never through the executor whose pipes the agent can reach)
      const run = await target.exec([BASH, "-c", `${BASH} /tests/test.sh ${redirect}`], { cwd: target.workdir, env, timeoutSec, signal, direct: isolation === "shared" });
      exitCode = run.exitCode;
      timedOut = run.timedOut;
    } else {
      // Under watch: the script itself clears /tests and /logs/verifier, places the tests and runs test.sh,
      // in one exec of its own (see verifierRun.ts)
      await target.upload(task.testsDir, staging);
      const watched = await runWatched({ sandbox: target, staging, base, env, timeoutSec, signal, streamsApart: apart }, randomBytes(8).toString("hex")).catch((e) => {
        if (e instanceof SandboxError) throw e; // the engine going away is infrastructure (retried), not the task's
        // signals seen before it failed (an agent process refilling /logs/verifier) still refuse the trial
        const seen = (e as { forged?: ForgerySignal[] }).forged;
        if (seen?.length) recordSignals(tamper, seen, flags);
        throw new VerifierError("VerifierError", (e as Error).message.split("\n")[0]);
      });
      rewardFiles = watched.rewardFiles;
      const forged = [...watched.forged, ...(await changedTests(target, task.testsDir))];
      recordSignals(tamper, forged, [...flags, ...watched.unknown]);
      exitCode = watched.exitCode;
      timedOut = watched.timedOut;
      if (!timedOut && isolation === "shared" && tamper && changes) await changedDuringVerifier(input.sandbox, changes, tamper);
    }
    await mkdir(path.join(trialDir, "verifier"), { recursive: true });
    if (flags.length && !tamper?.signals) recordSignals(tamper, [], flags);
    // train: the test report open-instruct appends (each stream capped at 1,000,000 bytes and decoded as Python does)
    const testRun = apart ? await readTestRun(target, timedOut ? 124 : exitCode, timeoutSec) : undefined;
    if (timedOut) {
      const error = new VerifierError("VerifierTimeoutError", `verifier did not finish within ${timeoutSec}s`);
      error.testRun = testRun;
      throw error;
    }

    // bounded: an engine that stops answering after test.sh fails the trial, it never hangs it
    // under watch the reward is the bytes the runner took at test.sh's exit (what Harbor reads right after it
    // returns), never a second read: by now the files could hold what an agent process wrote since
    const rewards = rewardFiles ? rewardsOf(rewardFiles, exitCode) : await withDeadline(readRewards(target, exitCode), 120_000, "reading the reward file");
    const note = notes.length ? notes.join("; ") : undefined;
    if (tamper && note) tamper.note = note;
    return { rewards, isolation, hardened: hardening !== null, quarantined, ...(note ? { note } : {}), ...(testRun ? { testRun } : {}) };
  } finally {
    if (tamper && notes.length && !tamper.note) tamper.note = notes.join("; ");
    if (ran) await withDeadline(input.collect?.(target) ?? Promise.resolve(), 360_000, "downloading /logs/verifier").catch(() => {});
    if (ran && input.clearAfter && target === input.sandbox) await harnessExec(target, `${RM} -rf /tests && ${RM} -rf /logs/verifier && ${MKDIR} -p /logs/verifier`, 60, true).catch(() => {});
    await withDeadline(snapshot?.remove() ?? Promise.resolve(), 120_000, "removing the verifier's snapshot").catch(() => {});
  }
}

/**
 * Runs the toolchain check in the verifier's container and adds its findings to the tamper report. Links the
 * agent made on the way to tmax's own tools (`/usr/bin` → a copy with another `timeout`) stop the verifier: no
 * harness command runs there (never an honest outcome). The agent container's changes are read again where it
 * is the verifier's container (kill, shared); a snapshot is what the scan saw. Returns the changes under the
 * agent's links at their place behind the link, for the quarantine.
 */
async function toolchainCheck(input: VerifyInput, target: Sandbox, isolation: VerifierIsolation, env: Record<string, string>, tamper: TamperReport, scanned: readonly FileChange[]): Promise<FileChange[]> {
  let changes = [...scanned];
  if (isolation !== "snapshot" && input.sandbox.changes) changes = await input.sandbox.changes().catch(() => changes);
  let result;
  try {
    result = await withDeadline(checkToolchain({ agent: input.sandbox, target, task: input.task, env, changes }), 300_000, "the toolchain check");
  } catch (e) {
    tamper.toolchain = { ms: 0, baseline_ms: 0, error: (e as Error).message.split("\n")[0]! };
    if (tamper.mode === "strict") tamper.flagged = true; // a check that could not run cannot vouch for the reward
    return [];
  }
  addFindings(tamper, result.findings);
  tamper.toolchain = { ms: result.ms, baseline_ms: result.baselineMs, ...(result.error ? { error: result.error } : {}) };
  if (result.unsafeHarness) throw new VerifierError("VerifierError", `tmax's own tools in the verifier's container are not the image's: ${result.unsafeHarness}`);
  return result.linked; // the quarantine moves shadows behind the agent's links aside too
}

/** The tamper report of the agent phase from the engine's changes list (none with integrity off, when only the quarantine needs the list). */
async function scanChanges(sandbox: Sandbox, mode: IntegrityMode): Promise<{ tamper?: TamperReport; changes?: FileChange[] }> {
  const empty = () => tamperReport([], { mode, workdir: sandbox.workdir });
  if (!sandbox.changes) return mode === "off" ? {} : { tamper: { ...empty(), error: `the ${sandbox.backend} backend has no container-changes API` } };
  try {
    const changes = (await sandbox.changes()).filter((c) => !TMAX_STAGING.test(c.path));
    return mode === "off" ? { changes } : { tamper: tamperReport(changes, { mode, workdir: sandbox.workdir }), changes };
  } catch (e) {
    // an unreadable report in strict mode counts as flagged: the reward cannot be vouched for
    return mode === "off" ? {} : { tamper: { ...empty(), flagged: mode === "strict", error: (e as Error).message.split("\n")[0] } };
  }
}

/** tmax's own dirs at / during the verifier (the tests' staging, the watch's work dir, the quarantine). */
const TMAX_STAGING = /^\/\.tmax-(verifier|watch|quarantine|net)-[0-9a-f]+(\.in)?(\/|$)/;

/** Refuse-grade signals make the trial `forged`; flag-grade ones (unknown processes, a refused snapshot) only flag it. */
function recordSignals(tamper: TamperReport | undefined, refuse: ForgerySignal[], flag: ForgerySignal[]): void {
  if (!tamper) return;
  const signals = [...refuse.map((s) => ({ ...s, severity: "refuse" as const })), ...flag.map((s) => ({ ...s, severity: "flag" as const }))];
  tamper.signals = signals.slice(0, 100);
  tamper.forged = refuse.length > 0;
  if (signals.length) tamper.flagged = true;
}

/** The test files as placed must still be the task's, byte for byte, after the tests ran (their mtimes are checked in the container). */
async function changedTests(sandbox: Sandbox, testsDir: string): Promise<ForgerySignal[]> {
  const out: ForgerySignal[] = [];
  const files = await listFiles(testsDir, 200);
  for (const rel of files) {
    const local = await readFile(path.join(testsDir, rel));
    if (local.length > 4 * 2 ** 20) continue;
    const remote = await sandbox.readFile(path.posix.join("/tests", rel.split(path.sep).join("/")), { maxBytes: local.length + 1 }).catch(() => undefined);
    if (remote === null) continue; // removed: the watch reports it (a test.sh may remove its own files)
    if (remote === undefined || !remote.equals(local)) out.push({ signal: "tests-changed", detail: `/tests/${rel} differs from the task's file after the tests` });
  }
  return out;
}

async function listFiles(dir: string, max: number, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(path.join(dir, rel))).sort()) {
    if (out.length >= max) break;
    const r = rel ? path.join(rel, name) : name;
    const st = await lstat(path.join(dir, r));
    if (st.isDirectory()) out.push(...(await listFiles(dir, max - out.length, r)));
    else if (st.isFile()) out.push(r);
  }
  return out;
}

/**
 * Shared mode: sensitive paths (the tamper classes) that changed between the scan and the end of the tests.
 * Informational: test.sh itself installs tools (apt-get, uv, pip), so no severity is attached.
 */
async function changedDuringVerifier(sandbox: Sandbox, before: readonly FileChange[], tamper: TamperReport): Promise<void> {
  if (!sandbox.changes) return;
  const after = await sandbox.changes().catch(() => null);
  if (!after) return;
  const seen = new Set(before.map((c) => `${c.kind} ${c.path}`));
  const sensitive = after
    .filter((c) => !seen.has(`${c.kind} ${c.path}`) && !TMAX_STAGING.test(c.path) && !/^\/(tests|logs\/verifier)(\/|$)/.test(c.path))
    .filter((c) => classifyPath(c.path, sandbox.workdir) !== null)
    .map((c) => c.path);
  tamper.n_changed_during_verifier = sensitive.length;
  if (sensitive.length) tamper.changed_during_verifier = sensitive.slice(0, 50);
}

/** test.sh's two streams as the verifier left them in /logs/verifier, each capped and decoded like a command's (train). */
async function readTestRun(target: Sandbox, exitCode: number, timeoutSec: number): Promise<TestRunOutput> {
  const read = async (name: string) => {
    const buf = (await target.readFile(`/logs/verifier/${name}`, { maxBytes: 64 * 2 ** 20 }).catch(() => null)) ?? Buffer.alloc(0);
    const capped = cappedBuffer(TRAIN_MAX_OUTPUT_BYTES);
    capped.push(buf);
    return capped.text();
  };
  return { stdout: await read("test-stdout.txt"), stderr: await read("test-stderr.txt"), exitCode, timeoutSec };
}

/** PATH dirs in resolution order (the usual image PATH). */
export const SHADOW_ORDER = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** Package metadata that can register plugins (pytest reads `[pytest11]` from every one on sys.path). */
export const ENTRY_POINTS = /\.(dist|egg)-info\/entry_points\.txt$/;

// $1: a file of lines "A <path>" (added in a PATH dir), "S <path>" (a shadow candidate), "P <path>"
// (sitecustomize/usercustomize), "E <path>" (an entry_points.txt). A file, not the environment: one variable
// is limited to 128 KiB, and an agent that adds a few thousand files made the exec fail with E2BIG (measured:
// nothing moved, the fake python3 ran in the verifier).
const QUARANTINE_SCRIPT = `
q=/.tmax-quarantine-$TMAX_NONCE
declare -A added
shadow=() site=() ep=()
while IFS= read -r l; do
  case "$l" in
    "A "*) added["\${l#A }"]=1 ;;
    "S "*) shadow+=("\${l#S }") ;;
    "P "*) site+=("\${l#P }") ;;
    "E "*) ep+=("\${l#E }") ;;
  esac
done < "$1" || exit 3
${RM} -f -- "$1"
# the image's PATH (PID 1 was started with the image's environment), else the usual one
order=(${SHADOW_ORDER.join(" ")})
while IFS= read -r -d '' kv; do case "$kv" in PATH=/*) IFS=: read -r -a order <<< "\${kv#PATH=}" ;; esac; done < /proc/1/environ 2>/dev/null
for p in "\${shadow[@]}"; do
  name=\${p##*/}; dir=\${p%/*}; after=0
  for d in "\${order[@]}"; do
    [ -n "$d" ] || continue
    if [ $after = 1 ] && [ -e "$d/$name" ] && ! [ "$p" -ef "$d/$name" ]; then
      [ -n "\${added["$d/$name"]}" ] && continue
      ${MKDIR} -p "$q$dir" && ${MV} -f "$p" "$q$p" && printf '%s\n' "$p"
      break
    fi
    [ "$d" = "$dir" ] && after=1
  done
done
for p in "\${site[@]}"; do
  [ -f "$p" ] || continue
  ${MKDIR} -p "$q\${p%/*}" && ${MV} -f "$p" "$q$p" && printf '%s\n' "$p"
done
for p in "\${ep[@]}"; do
  [ -f "$p" ] || continue
  hit=0
  while IFS= read -r l || [ -n "$l" ]; do case "$l" in *"[pytest11]"*) hit=1; break ;; esac; done < "$p"
  [ $hit = 1 ] || continue
  ${MKDIR} -p "$q\${p%/*}" && ${MV} -f "$p" "$q$p" && printf '%s\n' "$p"
done
exit 0
`;

/**
 * Moves aside, in the verifier's container, files the agent added in a PATH dir that shadow an image command
 * in a later PATH dir, and sitecustomize/usercustomize modules the agent wrote. Returns the moved paths.
 */
async function quarantineShadows(sandbox: Sandbox, changes: readonly FileChange[]): Promise<string[]> {
  const added = changes.filter((c) => c.kind === 1).map((c) => c.path);
  // in a PATH dir: the usual ones, or any bin/sbin (an image's own PATH may start with /opt/venv/bin, /opt/conda/bin …;
  // the script reads the image's PATH in the container)
  const inPathDir = (p: string) => SHADOW_ORDER.includes(path.posix.dirname(p)) || /\/s?bin$/.test(path.posix.dirname(p));
  const inPath = added.filter((p) => inPathDir(p) && !/\n/.test(p));
  const candidates = inPath.filter((p) => path.posix.dirname(p) !== "/bin");
  // sitecustomize/usercustomize the agent wrote or changed: Python runs them at startup; without them it runs as usual
  const site = changes.filter((c) => c.kind !== 2 && /\/(sitecustomize|usercustomize)\.py$/.test(c.path) && !/[\n|]/.test(c.path)).map((c) => c.path);
  // package metadata the agent wrote or changed that registers a pytest plugin ([pytest11] entry point): pytest
  // imports every such plugin on start, wherever the dist-info is on sys.path (site-packages, the workdir)
  const entryPoints = changes.filter((c) => c.kind !== 2 && ENTRY_POINTS.test(c.path) && !/[\n|]/.test(c.path)).map((c) => c.path);
  if (candidates.length === 0 && site.length === 0 && entryPoints.length === 0) return [];
  const lines = [...inPath.map((p) => `A ${p}`), ...candidates.map((p) => `S ${p}`), ...site.map((p) => `P ${p}`), ...entryPoints.map((p) => `E ${p}`)];
  const nonce = randomBytes(8).toString("hex");
  const list = `/.tmax-quarantine-${nonce}.in`;
  await sandbox.writeFile(list, `${lines.join("\n")}\n`, 0o600);
  const run = await sandbox.exec([BASH, "--noprofile", "--norc", "-c", QUARANTINE_SCRIPT, "tmax-quarantine", list], {
    env: { ...HARNESS_ENV, TMAX_NONCE: nonce },
    timeoutSec: 120,
    cwd: "/",
  });
  // never run the tests with the shadows in place because moving them failed
  if (run.exitCode !== 0) throw new VerifierError("VerifierError", `could not move the agent's PATH shadows aside (exit ${run.exitCode}): ${(run.stderr || run.stdout).trim().split("\n")[0]}`);
  return run.stdout.split("\n").filter(Boolean);
}

async function readRewards(sandbox: Sandbox, exitCode: number): Promise<Record<string, number>> {
  const json = await sandbox.readFile("/logs/verifier/reward.json");
  if (json) return rewardsOf({ "reward.json": json }, exitCode);
  const txt = await sandbox.readFile("/logs/verifier/reward.txt");
  return rewardsOf(txt ? { "reward.txt": txt } : {}, exitCode);
}

/** The rewards from reward.json (first) or reward.txt, as the watch took them or as read afterwards: one rule for both. */
export function rewardsOf(files: Record<string, Buffer | "big" | "special">, exitCode: number): Record<string, number> {
  const take = (name: string): string | undefined => {
    const f = files[name];
    if (f === undefined) return undefined;
    if (f === "special") throw new VerifierError("RewardFileError", `${name} is not a regular file`);
    if (f === "big") throw new VerifierError("RewardFileError", `${name} is over ${MAX_REWARD_BYTES} bytes (limit ${MAX_REWARD_BYTES})`);
    return checkSize(f, name);
  };
  const json = take("reward.json");
  if (json !== undefined) return parseRewardJson(json);
  const txt = take("reward.txt");
  if (txt === undefined) throw new VerifierError("RewardFileNotFoundError", `no reward file: /logs/verifier/reward.json and reward.txt missing (test.sh exit ${exitCode})`);
  return { reward: parseRewardText(txt) };
}

function checkSize(buf: Buffer, name: string): string {
  if (buf.length > MAX_REWARD_BYTES) throw new VerifierError("RewardFileError", `${name} is ${buf.length} bytes (limit ${MAX_REWARD_BYTES})`);
  return buf.toString("utf8");
}

const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** reward.txt: the whole file (surrounding whitespace aside) must be one finite decimal number. */
export function parseRewardText(text: string): number {
  const t = text.trim();
  const value = NUMBER.test(t) ? Number(t) : Number.NaN;
  if (!Number.isFinite(value)) throw new VerifierError("RewardFileError", `reward.txt is not a number: ${JSON.stringify(t.slice(0, 40))}`);
  return value;
}

/** reward.json: a JSON number, or an object whose every value is a finite JSON number. */
export function parseRewardJson(text: string): Record<string, number> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new VerifierError("RewardFileError", "reward.json is not valid JSON");
  }
  if (typeof parsed === "number") return { reward: parsed };
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new VerifierError("RewardFileError", "reward.json must be a number or an object of numbers");
  const entries = Object.entries(parsed as Record<string, unknown>);
  if (entries.length === 0) throw new VerifierError("RewardFileError", "reward.json holds no numbers");
  for (const [k, v] of entries) {
    if (typeof v !== "number" || !Number.isFinite(v)) throw new VerifierError("RewardFileError", `reward.json: ${JSON.stringify(k.slice(0, 40))} is not a number`);
  }
  return Object.fromEntries(entries) as Record<string, number>;
}

/** Rewards are clamped to [0, 1] everywhere (eval and rollout); NaN counts 0. */
export function clampUnit(x: number): number {
  if (Number.isNaN(x)) return 0;
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

/**
 * The hardened verifier environment for a TB-style test.sh (pytest on files under /tests), or null when it
 * cannot be applied safely. Python: no user site dir. pytest: rootdir and conftest search confined to /tests,
 * the ini file is the tests' own or none (so /pytest.ini, /conftest.py, /pyproject.toml … are never read).
 * A task opts out with `[verifier] tmax_hardening = false` in task.toml.
 */
export function hardeningEnv(task: Task): Record<string, string> | null {
  const verifierRaw = (task.config.raw?.verifier ?? {}) as Record<string, unknown>;
  if (verifierRaw.tmax_hardening === false) return null;
  const env: Record<string, string> = { PYTHONNOUSERSITE: "1" };
  const testSh = path.join(task.testsDir, "test.sh");
  const script = existsSync(testSh) ? readFileSync(testSh, "utf8") : "";
  // Only when every pytest invocation targets /tests and the script does not set pytest options itself.
  const invocations = script.split("\n").filter((l) => /\bpytest\b/.test(l) && !/^\s*#/.test(l) && !/\b(pip|uv|apt|apt-get)\b.*\binstall\b/.test(l));
  const tbStyle = invocations.length > 0 && invocations.every((l) => /\s\/tests\b/.test(l)) && !/PYTEST_ADDOPTS|\s-c\s|--rootdir|--confcutdir/.test(script);
  if (tbStyle) {
    const ini = ["pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"].find((f) => existsSync(path.join(task.testsDir, f)));
    env.PYTEST_ADDOPTS = `-c ${ini ? `/tests/${ini}` : "/dev/null"} --rootdir=/tests --confcutdir=/tests`;
  }
  return env;
}

/**
 * The isolation for a task: the user's flag, else task.toml `[verifier] tmax_isolation`, else the default:
 * `harbor` (eval, run) is `shared` on every backend, Harbor's semantics; `strong` (rollout) is `snapshot` on
 * docker and `kill` on daytona (the local backend never kills: `shared`).
 */
export function chooseIsolation(task: Task, backend: string, flag?: VerifierIsolation, fallback: "harbor" | "strong" = "harbor"): VerifierIsolation {
  if (flag) return flag;
  const fromTask = taskIsolation(task);
  if (fromTask) return fromTask;
  if (fallback === "harbor" || backend === "local") return "shared";
  return backend === "docker" ? "snapshot" : "kill";
}

/** task.toml's `[verifier] tmax_isolation`, when it names a mode. */
export function taskIsolation(task: Task): VerifierIsolation | undefined {
  const fromTask = ((task.config.raw?.verifier ?? {}) as Record<string, unknown>).tmax_isolation;
  return typeof fromTask === "string" && (VERIFIER_ISOLATIONS as readonly string[]).includes(fromTask) ? (fromTask as VerifierIsolation) : undefined;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
