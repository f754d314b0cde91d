// Datasets by name: a registry entry's tasks fetched with the git CLI (shallow, at the pinned commit, sparse to the
// task paths), checked against that commit, and assembled into one dataset dir under the user's cache dir:
//   <cache>/git/<url hash>/<commit>/          sparse checkouts, reused across datasets
//   <cache>/datasets/<name>@<version>/        one dir per task + .tmax-dataset.json (what was fetched, from where)
// A dataset already assembled from the same registry entry is used as is, without any network access.
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { cp, mkdir, readFile, realpath, rename, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { isWithin } from "../util/fs.js";
import { describeOwner, tryLock } from "../util/lockFile.js";
import { isDir } from "./files.js";
import { findDataset, loadRegistry, parseDatasetRef, type RegistryDataset, type RegistryTask } from "./registry.js";

const run = promisify(execFile);

/** $TMAX_CACHE_DIR, else $XDG_CACHE_HOME/tmax, else ~/.cache/tmax. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TMAX_CACHE_DIR) return path.resolve(env.TMAX_CACHE_DIR);
  return path.join(env.XDG_CACHE_HOME ? path.resolve(env.XDG_CACHE_HOME) : path.join(os.homedir(), ".cache"), "tmax");
}

export interface PulledDataset {
  name: string;
  version: string;
  /** The commit the tasks came from (several, comma-separated, when tasks pin different commits); null: local paths only. */
  commit: string | null;
  registry: string;
  /** The assembled dataset dir (a dir of task dirs). */
  dir: string;
  /** True when nothing had to be fetched. */
  cached: boolean;
  notes: string[];
}

export interface PullDatasetOptions {
  registry: string;
  cacheDir?: string;
  onLog?: (line: string) => void;
  /** Re-fetch even when the cache holds the dataset. */
  refresh?: boolean;
}

interface Manifest {
  schema: "tmax.dataset/v1";
  name: string;
  version: string;
  registry: string;
  spec_hash: string;
  commit: string | null;
  tasks: Array<{ name: string; git_url: string | null; commit: string | null; path: string }>;
}

/**
 * A registry reference as typed: `name` or `name@version` (Harbor's `org/name@ref` ids too, the `@ref` required).
 * Anything else — `./x`, `/x`, `~/x`, `a/b` without `@`, `path/to/x`, a name whose first segment is a directory
 * here — is a path, and a path that does not exist is a typo, never a registry lookup over the network.
 */
export function isRegistryRef(text: string, exists: (p: string) => boolean = existsSync): boolean {
  const name = "[A-Za-z0-9][A-Za-z0-9._-]*";
  if (new RegExp(`^${name}(@[A-Za-z0-9][A-Za-z0-9._+:-]*)?$`).test(text)) return !exists(text);
  if (new RegExp(`^${name}/${name}@[A-Za-z0-9][A-Za-z0-9._+:-]*$`).test(text)) return !exists(text.split("/")[0]!);
  return false;
}

/** Resolves `name@version` through the registry and returns the local dataset dir, fetching what is missing. */
export async function pullDataset(refText: string, opts: PullDatasetOptions): Promise<PulledDataset> {
  const cache = opts.cacheDir ?? cacheRoot();
  const registry = await loadRegistry(opts.registry, cache);
  const notes = registry.offlineNote ? [registry.offlineNote] : [];
  const dataset = findDataset(registry, parseDatasetRef(refText));
  // a task without git_url is a path next to a registry *file*; from a remote registry it would name a dir of this
  // machine (measured: `"path": "/some/host/dir"` copied that dir, secrets included, into the dataset cache)
  // likewise a git_url that is a local path or file:// URL (a repository of this machine)
  const remote = /^https?:\/\//i.test(registry.source);
  const local = remote ? dataset.tasks.find((t) => !t.git_url) : undefined;
  if (local) throw new Error(`registry ${registry.source}: task ${local.name} has no git_url; a remote registry's tasks must come from git (a local path would read this machine's files)`);
  const localRepo = remote ? dataset.tasks.find((t) => t.git_url && !isNetworkGitUrl(t.git_url)) : undefined;
  if (localRepo) throw new Error(`registry ${registry.source}: task ${localRepo.name} has git_url ${JSON.stringify(localRepo.git_url)}, a repository on this machine; a remote registry's tasks must come from https://, ssh:// or git:// URLs`);
  const dir = datasetDir(cache, dataset);
  const specHash = hashSpec(dataset, registry.baseDir);
  const hasLocal = dataset.tasks.some((t) => !t.git_url);

  const reuse = async (): Promise<PulledDataset | undefined> => {
    if (opts.refresh || hasLocal) return undefined;
    const m = await readManifest(dir);
    if (m?.spec_hash !== specHash) return undefined;
    return { name: m.name, version: m.version, commit: m.commit, registry: registry.source, dir, cached: true, notes };
  };
  const hit = await reuse();
  if (hit) return hit;

  const release = await acquireLock(`${dir}.lock`);
  try {
    const again = await reuse(); // another process may have finished it while we waited
    if (again) return again;
    return { ...(await assemble(cache, dir, dataset, registry.baseDir, registry.source, specHash, opts.onLog)), notes };
  } finally {
    await release();
  }
}

/** https://, http://, ssh://, git:// or scp-like `user@host:path`: a repository on another machine. */
function isNetworkGitUrl(url: string): boolean {
  return /^(https?|ssh|git|git\+ssh|ssh\+git):\/\/[^/]/i.test(url) || /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!\/\/)/.test(url);
}

export function datasetDir(cache: string, d: Pick<RegistryDataset, "name" | "version">): string {
  // name@version as the dir name: tools that name a dataset by its dir (reports, rollout records) show both
  return path.join(cache, "datasets", `${safeSegment(d.name)}@${safeSegment(d.version)}`);
}

/** Reads the manifest of an assembled dataset dir, or null. */
export async function readManifest(dir: string): Promise<Manifest | null> {
  try {
    const m = JSON.parse(await readFile(path.join(dir, ".tmax-dataset.json"), "utf8")) as Manifest;
    return m.schema === "tmax.dataset/v1" ? m : null;
  } catch {
    return null;
  }
}

async function assemble(cache: string, dir: string, dataset: RegistryDataset, baseDir: string, registry: string, specHash: string, onLog?: (l: string) => void): Promise<Omit<PulledDataset, "notes">> {
  // Group git tasks by repository and commit: one sparse checkout each.
  const groups = new Map<string, RegistryTask[]>();
  for (const t of dataset.tasks) {
    if (!t.git_url) continue;
    const key = `${t.git_url}\0${t.git_commit_id ?? ""}`;
    groups.set(key, [...(groups.get(key) ?? []), t]);
  }
  const resolved = new Map<RegistryTask, { root: string; commit: string | null }>();
  for (const tasks of groups.values()) {
    const { git_url: url, git_commit_id: commit } = tasks[0]!;
    const co = await checkout(cache, url!, commit ?? null, tasks.map((t) => t.path), onLog);
    for (const t of tasks) resolved.set(t, co);
  }

  await mkdir(path.dirname(dir), { recursive: true });
  const staging = `${dir}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    await mkdir(staging, { recursive: true });
    const manifestTasks: Manifest["tasks"] = [];
    const used = new Set<string>();
    for (const t of dataset.tasks) {
      const co = resolved.get(t);
      const src = co ? path.join(co.root, t.path) : path.resolve(baseDir, t.path);
      if (co && !isWithin(co.root, src)) throw new Error(`task ${t.name}: path ${t.path} leaves its repository`);
      if (!(await isDir(src))) throw new Error(`task ${t.name}: ${t.path} is not a directory${co ? ` in ${t.git_url} at ${co.commit}` : ""}`);
      if (co) {
        // a task path that is (or passes through) a link out of the checkout would copy host files into the dataset
        const [realRoot, realSrc] = await Promise.all([realpath(co.root), realpath(src)]);
        if (!isWithin(realRoot, realSrc)) throw new Error(`task ${t.name}: path ${t.path} leads out of its repository through a link`);
      }
      let name = safeSegment(t.name.split("/").pop()!);
      while (used.has(name)) name = `${name}_`;
      used.add(name);
      await cp(src, path.join(staging, name), { recursive: true, filter: (p) => path.basename(p) !== ".git" });
      manifestTasks.push({ name: t.name, git_url: t.git_url ?? null, commit: co?.commit ?? null, path: t.path });
    }
    const commits = [...new Set(manifestTasks.map((t) => t.commit).filter((c): c is string => !!c))];
    const manifest: Manifest = { schema: "tmax.dataset/v1", name: dataset.name, version: dataset.version, registry, spec_hash: specHash, commit: commits.length ? commits.join(",") : null, tasks: manifestTasks };
    await writeFile(path.join(staging, ".tmax-dataset.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    await rm(dir, { recursive: true, force: true });
    await rename(staging, dir);
    return { name: dataset.name, version: dataset.version, commit: manifest.commit, registry, dir, cached: false };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * A checkout of `url` at `commit` holding at least `paths`: shallow (depth 1), blobs filtered where the server
 * allows, sparse to the task paths. The commit is verified against HEAD. Without a commit the default branch's
 * head is fetched (and recorded).
 */
async function checkout(cache: string, url: string, commit: string | null, paths: string[], onLog?: (l: string) => void): Promise<{ root: string; commit: string }> {
  const root = path.join(cache, "git", createHash("sha256").update(url).digest("hex").slice(0, 16), commit ? safeSegment(commit) : "HEAD");
  const wanted = [...new Set(paths.map((p) => p.replace(/^\.?\/+/, "").replace(/\/+$/, "")))];
  const whole = wanted.some((p) => p === "" || p === ".");
  if (commit && existsSync(path.join(root, ".git"))) {
    const head = await git(root, ["rev-parse", "HEAD"]).catch(() => "");
    if (head.startsWith(commit.toLowerCase())) {
      const missing = wanted.filter((p) => !existsSync(path.join(root, p)));
      if (missing.length === 0) return { root, commit: head };
      if (!whole) {
        await git(root, ["sparse-checkout", "add", ...missing]);
        if (missing.every((p) => existsSync(path.join(root, p)))) return { root, commit: head };
      }
    }
  }
  onLog?.(`fetching ${url}${commit ? ` @ ${commit.slice(0, 12)}` : ""} (${wanted.length} path(s))`);
  const tmp = `${root}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  await mkdir(tmp, { recursive: true });
  try {
    await git(tmp, ["init", "-q"]);
    await git(tmp, ["remote", "add", "origin", url]);
    if (!whole) await git(tmp, ["sparse-checkout", "set", ...wanted]);
    const ref = commit ?? "HEAD";
    try {
      await git(tmp, ["fetch", "-q", "--depth", "1", "--filter=blob:none", "origin", ref]);
    } catch (err) {
      // servers that refuse to serve an unadvertised commit: fetch everything, then pick the commit
      if (!commit) throw err;
      onLog?.(`shallow fetch of ${commit.slice(0, 12)} refused; fetching the full history`);
      await git(tmp, ["fetch", "-q", "origin"]);
    }
    await git(tmp, ["-c", "advice.detachedHead=false", "checkout", "-q", commit ?? "FETCH_HEAD"]);
    const head = await git(tmp, ["rev-parse", "HEAD"]);
    if (commit && !head.startsWith(commit.toLowerCase())) throw new Error(`commit check failed for ${url}: wanted ${commit}, got ${head}`);
    await rm(root, { recursive: true, force: true });
    await mkdir(path.dirname(root), { recursive: true });
    await rename(tmp, root);
    return { root, commit: head };
  } catch (err) {
    const stale = !commit && existsSync(path.join(root, ".git"));
    if (stale) {
      onLog?.(`cannot fetch ${url} (${(err as Error).message.split("\n")[0]}); using the cached checkout`);
      return { root, commit: await git(root, ["rev-parse", "HEAD"]) };
    }
    throw err;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function git(cwd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run("git", args, {
      cwd,
      timeout: 600_000,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, GIT_TERMINAL_PROMPT: "0", GIT_ASKPASS: "/bin/false", LC_ALL: "C" },
    });
    return stdout.trim();
  } catch (err) {
    const e = err as { stderr?: string; message: string; code?: string };
    if (e.code === "ENOENT") throw new Error("the git CLI is needed to fetch datasets (apt-get install git)");
    const detail = (e.stderr ?? e.message).trim().split("\n").filter(Boolean).pop() ?? e.message;
    throw new Error(`git ${args[0]} failed: ${detail}`);
  }
}

function hashSpec(d: RegistryDataset, baseDir: string): string {
  const tasks = d.tasks.map((t) => ({ n: t.name, u: t.git_url ?? null, c: t.git_commit_id ?? null, p: t.path, b: t.git_url ? null : baseDir }));
  return createHash("sha256").update(JSON.stringify({ name: d.name, version: d.version, tasks })).digest("hex");
}

function safeSegment(s: string): string {
  const out = s.replace(/[^A-Za-z0-9._@+-]+/g, "_").replace(/^\.+/, "_");
  return out || "_";
}

/**
 * The dataset cache's lock: util/lockFile.ts's owner lock (a dead owner or a reused pid is taken over; a live one,
 * another host's or an unreadable lock is waited for). Waits up to `timeoutMs`, then one line naming the file.
 */
export async function acquireLock(file: string, timeoutMs = 15 * 60_000): Promise<() => Promise<void>> {
  await mkdir(path.dirname(file), { recursive: true });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await tryLock(file);
    if ("release" in got) return got.release;
    if (Date.now() > deadline) {
      throw new Error(`${file} is held ${describeOwner(got.owner, got.verdict)} (another tmax pulling the same dataset); if none is, remove ${file}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
