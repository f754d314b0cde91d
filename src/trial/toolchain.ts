// The verifier's toolchain, checked against the task's image: what test.sh will execute and import (commands
// on its PATH, the shared libraries they load, the Python test runner and every module file it loads, sys.path,
// the CA file, tmax's own harness tools) is listed once per image by a probe in a fresh container of that image
// (assets/toolchain-probe.py, run by the image's own Python), then looked up in the container the verifier runs
// in through the engine only (archive path-stat, and the engine's list of changed files): nothing the agent
// could have replaced runs for the check. See docs/reward-integrity.md ("Toolchain check").
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { FileChange, PathStat, Sandbox } from "../sandbox/types.js";
import type { Task } from "../tasks/types.js";
import { withDeadline } from "../util/deadline.js";
import { classifyPath, dirClass, type TamperFinding } from "./tamper.js";

/** tmax's own tools in the verifier's container (verifier.ts, the executor's helper, docker.ts). */
export const HARNESS_TOOLS = ["/bin/bash", "/usr/bin/timeout", "/bin/rm", "/bin/mkdir", "/bin/mv", "/bin/sleep", "/usr/bin/env", "/usr/bin/stdbuf", "/usr/bin/head", "/usr/bin/wc", "/usr/bin/stat", "/bin/cat", "/usr/bin/setsid"];
/** Commands looked up on the verifier's PATH besides those test.sh names. */
const ALWAYS = ["bash", "sh", "python3", "python", "pytest", "py.test", "uv", "uvx", "pip", "pip3", "curl", "wget"];
const CHANGE = ["modified", "added", "deleted"] as const;
const PROBE_TIMEOUT_SEC = 180;
const STAT_CONCURRENCY = 8;

/** What the probe found in a fresh container of the image. */
interface Probe {
  /** The verifier's PATH as the probe saw it. */
  path?: string;
  commands: Record<string, string>;
  files: string[];
  python: null | {
    executable: string;
    sys_path: string[];
    stdlib_names: string[];
    modules: Array<[string, string]>;
    module_files?: string[];
  };
  errors: string[];
}

interface Baseline {
  probe: Probe;
  /** The engine's stat of every path compared (files, their parent dirs, sys.path entries, harness tools). */
  stats: Map<string, PathStat | null>;
  ms: number;
}

export interface ToolchainResult {
  findings: TamperFinding[];
  /** Changes under a link the agent made, at their place behind the link (`/usr/local/bin/python3` for `/opt/x/python3`). */
  linked: FileChange[];
  /** tmax's own tools in the verifier's container lead somewhere else than in the image (a link the agent made). */
  unsafeHarness?: string;
  /** Time the check took in the verifier's container, and the baseline's (0 when cached). */
  ms: number;
  baselineMs: number;
  error?: string;
}

const baselines = new Map<string, Promise<Baseline>>();

/**
 * Compares the verifier's toolchain in `target` (where test.sh will run) with the task's image. `agent` is the
 * agent's sandbox (its image is the task's; it makes the fresh baseline container). `changes`: the agent
 * phase's filesystem changes as the engine lists them.
 */
export async function checkToolchain(input: { agent: Sandbox; target: Sandbox; task: Task; env: Record<string, string>; changes: readonly FileChange[] }): Promise<ToolchainResult> {
  const { agent, target } = input;
  if (!agent.imageId || !agent.pristine || !target.stat) return { findings: [], linked: [], ms: 0, baselineMs: 0, error: `the ${agent.backend} backend cannot stat paths through the engine: toolchain not checked` };
  const imports = testImports(input.task.testsDir);
  const commands = [...new Set([...ALWAYS, ...testCommands(input.task.testsDir)])].sort();
  const key = createHash("sha256")
    .update(JSON.stringify([await agent.imageId(), agent.workdir, input.env, commands, imports]))
    .digest("hex");
  let cached = true;
  let pending = baselines.get(key);
  if (!pending) {
    cached = false;
    pending = buildBaseline(agent, { env: input.env, commands, imports });
    baselines.set(key, pending);
    pending.catch(() => baselines.delete(key)); // a failed baseline is retried by the next trial
  }
  const baseline = await pending;
  const t1 = performance.now();
  // the agent's own code is what the tests import from the workdir: never part of the toolchain
  const wd = path.posix.resolve("/", agent.workdir);
  const ours = (f: string) => wd === "/" || !(f === wd || f.startsWith(`${wd}/`));
  const statOf = cachedStat(target);
  const findings: TamperFinding[] = [];
  const linked: FileChange[] = [];
  const add = (p: string, change: TamperFinding["change"], cls: string) => findings.push({ path: p, change, class: cls });

  // 1. tmax's own tools and every file the probe listed: the same path resolution (links included) and the
  //    same file (size, mode, mtime) as in the image
  let unsafeHarness: string | undefined;
  const files = [...new Set([...HARNESS_TOOLS, ...baseline.probe.files.filter(ours)])];
  await forEach(files, async (file) => {
    const [want, got] = [await resolveIn((p) => Promise.resolve(baseline.stats.get(p) ?? null), file), await resolveIn(statOf, file)];
    const harness = HARNESS_TOOLS.includes(file);
    if (sameResolution(want, got)) return;
    const linked = want.real !== got.real || want.links.join() !== got.links.join();
    if (harness && linked) unsafeHarness ??= `${file} leads to ${got.real} (the image's leads to ${want.real})`;
    add(file, got.stat ? (want.stat ? "modified" : "added") : "deleted", harness ? "harness" : (classifyPath(file) ?? "toolchain"));
  });

  // 2. links the agent made where the image had an entry of its own (a dir replaced by a link hides what is in it):
  //    the link itself takes the class of what it stands for, and every change under its target counts at its place
  const changed = new Map(input.changes.map((c) => [c.path, c]));
  const roots = sensitiveRoots(baseline);
  const candidates = input.changes.filter((c) => c.kind !== 2 && roots.some((r) => r === c.path || r.startsWith(`${c.path}/`) || (c.kind === 0 && path.posix.dirname(c.path) === r)));
  await forEach(candidates, async (c) => {
    const st = await statOf(c.path);
    if (!st?.link) return;
    add(c.path, CHANGE[c.kind], classifyPath(c.path) ?? dirClass(c.path) ?? "toolchain");
    const to = st.linkTarget;
    if (!to || to === "/") return;
    // one finding per entry of the linked dir and class (a copy of dist-packages is thousands of files)
    for (const under of input.changes) {
      if (under.kind === 2 || !under.path.startsWith(`${to}/`)) continue;
      const rel = under.path.slice(to.length + 1);
      linked.push({ path: `${c.path}/${rel}`, kind: under.kind });
      const cls = classifyPath(`${c.path}/${rel}`);
      if (cls) add(`${c.path}/${rel.split("/")[0]}`, CHANGE[under.kind], cls);
    }
  });

  // 3. a command test.sh runs, now found earlier on the verifier's PATH than in the image (a new file there)
  const dirs = (baseline.probe.path ?? "").split(":").filter((d) => d.startsWith("/"));
  for (const [name, found] of Object.entries(baseline.probe.commands)) {
    const k = dirs.indexOf(path.posix.dirname(found));
    for (const dir of dirs.slice(0, k < 0 ? 0 : k)) {
      const c = changed.get(`${dir}/${name}`);
      if (c && c.kind !== 2) add(c.path, CHANGE[c.kind], classifyPath(c.path) ?? "toolchain");
    }
  }

  // 4. Python: module files the runner (and the tests' own imports) load, changed in place or their bytecode
  //    replaced; a file that takes a loaded module's name earlier on sys.path; a sys.path entry that did not
  //    exist in the image and is now a file (a zip before the stdlib); the workdir shadowing any stdlib name
  const py = baseline.probe.python;
  if (py) {
    for (const f of (py.module_files ?? []).filter(ours)) {
      const c = changed.get(f);
      if (c) add(f, CHANGE[c.kind], classifyPath(f) ?? "toolchain");
    }
    const entries = py.sys_path;
    const workdir = path.posix.resolve("/", target.workdir);
    // the package's __init__.py, or else the bare entry (a link to a package elsewhere lists only itself)
    const shadowAt = (dir: string, name: string) => [changed.has(`${dir}/${name}/__init__.py`) ? `${dir}/${name}/__init__.py` : `${dir}/${name}`, `${dir}/${name}.py`, `${dir}/${name}.pyc`];
    const soShadow = (dir: string, name: string) => input.changes.some((c) => c.kind !== 2 && path.posix.dirname(c.path) === dir && c.path.slice(dir.length + 1).startsWith(`${name}.`) && c.path.endsWith(".so"));
    const seen = new Set<string>();
    for (const [name, file] of py.modules.filter(([, f]) => ours(f))) {
      const top = name.split(".")[0]!;
      if (name !== top || seen.has(top)) continue;
      seen.add(top);
      const k = entries.findIndex((e) => file.startsWith(`${e}/`));
      for (let j = 0; j < (k < 0 ? entries.length : k); j++) {
        const dir = entries[j]!;
        for (const p of shadowAt(dir, top)) {
          const c = changed.get(p);
          if (c && c.kind !== 2) add(p, CHANGE[c.kind], dir === workdir ? "module-shadow" : (classifyPath(p) ?? "toolchain"));
        }
        if (soShadow(dir, top)) add(`${dir}/${top}.*.so`, "added", dir === workdir ? "module-shadow" : "toolchain");
      }
    }
    await forEach(entries, async (e) => {
      if (baseline.stats.get(e) || e === workdir) return;
      const st = await statOf(e);
      if (st && !st.dir) add(e, "added", "toolchain");
    });
    if (workdir !== "/") {
      for (const name of py.stdlib_names) {
        for (const p of shadowAt(workdir, name)) {
          const c = changed.get(p);
          if (c && c.kind !== 2 && p !== `${workdir}/${name}`) add(p, CHANGE[c.kind], "module-shadow");
        }
        if (soShadow(workdir, name)) add(`${workdir}/${name}.*.so`, "added", "module-shadow");
      }
    }
  }
  const unique = [...new Map(findings.map((f) => [`${f.path}\0${f.class}`, f])).values()];
  return { findings: unique, linked, ...(unsafeHarness ? { unsafeHarness } : {}), ms: Math.round(performance.now() - t1), baselineMs: cached ? 0 : Math.round(baseline.ms), ...(baseline.probe.errors.length && !py ? { error: baseline.probe.errors[0] } : {}) };
}

/** Lists the toolchain in a fresh container of the agent's image and stats every path of it there. */
async function buildBaseline(agent: Sandbox, o: { env: Record<string, string>; commands: string[]; imports: string[] }): Promise<Baseline> {
  const t0 = performance.now();
  const fresh = await agent.pristine!();
  try {
    const script = readFileSync(new URL("../../assets/toolchain-probe.py", import.meta.url), "utf8");
    await fresh.writeFile("/tmp/.tmax-toolchain-probe.py", script, 0o600);
    const args = JSON.stringify({ commands: o.commands, imports: o.imports });
    const run = await fresh.exec(["/bin/bash", "--noprofile", "--norc", "-c", PROBE_LAUNCHER, "tmax-probe", args], { env: o.env, cwd: fresh.workdir, timeoutSec: PROBE_TIMEOUT_SEC });
    const at = run.stdout.indexOf("--tmax-toolchain--\n");
    if (run.exitCode !== 0 || at < 0) throw new Error(`the toolchain probe failed in a fresh container of ${agent.image} (exit ${run.exitCode}): ${(run.stderr || run.stdout).trim().split("\n").at(-1)}`);
    const probe = JSON.parse(run.stdout.slice(at + "--tmax-toolchain--\n".length)) as Probe;
    const paths = new Set<string>();
    for (const f of [...HARNESS_TOOLS, ...probe.files]) for (const p of prefixes(f)) paths.add(p);
    for (const e of probe.python?.sys_path ?? []) paths.add(e);
    const stats = new Map<string, PathStat | null>();
    const statOf = cachedStat(fresh);
    // link targets are resolved on the way: stat what resolution visits, then the listed paths
    await forEach([...paths], async (p) => void stats.set(p, await statOf(p)));
    for (const f of [...HARNESS_TOOLS, ...probe.files]) await resolveIn(async (p) => {
      const st = await statOf(p);
      stats.set(p, st);
      return st;
    }, f);
    return { probe, stats, ms: performance.now() - t0 };
  } finally {
    await withDeadline(fresh.remove(), 60_000, "removing the toolchain baseline container").catch(() => undefined);
  }
}

// Runs the probe with the image's Python as the verifier's PATH finds it; without one, lists the commands only.
const PROBE_LAUNCHER = String.raw`
py=$(type -P python3 || type -P python)
if [ -n "$py" ]; then exec "$py" /tmp/.tmax-toolchain-probe.py "$1"; fi
printf -- '--tmax-toolchain--\n{"commands": {}, "files": [], "python": null, "errors": ["no python on the verifier PATH"]}\n'
`;

interface Resolution {
  real: string;
  links: string[];
  stat: PathStat | null;
}

/** Resolves `file` component by component with the engine's stat (links as the engine resolves them). */
async function resolveIn(stat: (p: string) => Promise<PathStat | null>, file: string): Promise<Resolution> {
  const parts = file.split("/").filter(Boolean);
  let cur = "";
  const links: string[] = [];
  for (let i = 0; i < parts.length; i++) {
    const next = `${cur}/${parts[i]}`;
    const st = await stat(next);
    if (!st) return { real: [next, ...parts.slice(i + 1)].join("/"), links, stat: null };
    if (st.link) {
      if (links.length > 40 || !st.linkTarget) return { real: next, links, stat: null };
      links.push(`${next}->${st.linkTarget}`);
      cur = st.linkTarget === "/" ? "" : st.linkTarget;
      if (i === parts.length - 1) return { real: cur || "/", links, stat: await stat(cur || "/") };
      continue;
    }
    cur = next;
    if (i === parts.length - 1) return { real: cur, links, stat: st };
  }
  return { real: "/", links, stat: await stat("/") };
}

function sameResolution(a: Resolution, b: Resolution): boolean {
  if (a.real !== b.real || a.links.join() !== b.links.join()) return false;
  if (!a.stat || !b.stat) return !a.stat && !b.stat;
  if (a.stat.dir || b.stat.dir) return a.stat.dir === b.stat.dir; // a dir's size and mtime change with any entry
  return a.stat.size === b.stat.size && a.stat.perm === b.stat.perm && a.stat.mtime === b.stat.mtime;
}

/** Dirs whose replacement by a link matters: PATH dirs, sys.path, the dirs of every listed file, and their parents. */
function sensitiveRoots(b: Baseline): string[] {
  const roots = new Set(["/tests", "/logs/verifier", "/etc", "/etc/ssl", "/etc/ssl/certs", "/root", "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/lib", "/lib", "/usr/local/lib"]);
  for (const f of [...HARNESS_TOOLS, ...b.probe.files, ...(b.probe.python?.module_files ?? [])]) roots.add(path.posix.dirname(f));
  for (const e of b.probe.python?.sys_path ?? []) roots.add(e);
  for (const c of Object.values(b.probe.commands)) roots.add(path.posix.dirname(c));
  return [...roots].filter((r) => r !== "/");
}

function prefixes(file: string): string[] {
  const parts = file.split("/").filter(Boolean);
  return parts.map((_, i) => `/${parts.slice(0, i + 1).join("/")}`);
}

function cachedStat(sb: Sandbox): (p: string) => Promise<PathStat | null> {
  const memo = new Map<string, Promise<PathStat | null>>();
  return (p) => {
    let v = memo.get(p);
    if (!v) memo.set(p, (v = sb.stat!(p)));
    return v;
  };
}

async function forEach<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(STAT_CONCURRENCY, items.length) }, worker));
}

/** Command names test.sh runs (first word of each simple command; builtins drop out when not found on PATH). */
export function testCommands(testsDir: string): string[] {
  const file = path.join(testsDir, "test.sh");
  if (!existsSync(file)) return [];
  const names = new Set<string>();
  for (const raw of readFileSync(file, "utf8").split("\n")) {
    const line = raw.replace(/(^|\s)#.*$/, "");
    for (const part of line.split(/&&|\|\||[;|&(){}`]|\$\(/)) {
      const words = part.trim().split(/\s+/).filter((w) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(w));
      let w = words[0] ?? "";
      if (/^(if|then|else|elif|do|while|until|exec|time|command|sudo|env|nohup|!)$/.test(w)) w = words[1] ?? "";
      if (/^[A-Za-z0-9][A-Za-z0-9._+-]*$/.test(w) && !/^(fi|done|esac|in|case|for|function|return|exit|echo|printf|cd|source|set|export|local|test|true|false|read|shift|wait|trap)$/.test(w)) names.add(w);
    }
  }
  return [...names].slice(0, 100);
}

/** Top-level modules the tests import that are not their own files (third-party or stdlib). */
export function testImports(testsDir: string): string[] {
  if (!existsSync(testsDir)) return [];
  const own = new Set<string>();
  const names = new Set<string>();
  const walk = (dir: string, depth: number) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory() && depth < 3) {
        own.add(e.name);
        walk(p, depth + 1);
      } else if (e.isFile() && e.name.endsWith(".py")) {
        own.add(e.name.slice(0, -3));
        for (const m of readFileSync(p, "utf8").matchAll(/^\s*(?:from\s+([A-Za-z_][\w]*)[\w.]*\s+import\b|import\s+([A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*))/gm)) {
          for (const n of (m[1] ?? m[2] ?? "").split(",")) names.add(n.trim().split(".")[0]!);
        }
      }
    }
  };
  walk(testsDir, 0);
  return [...names].filter((n) => n && !own.has(n)).sort().slice(0, 100);
}
