// The container's /logs come back as untrusted data under `<trial>/sandbox/` (agent, verifier, artifacts),
// through the safe extractor with one per-trial budget; secrets are masked in what was written; a bounded,
// redacted copy of the verifier's output is kept at `<trial>/verifier/test-stdout.txt`. Harbor's --artifact paths
// come back under `<trial>/artifacts/` (mirrored by their container path) with Harbor's manifest.json.
import { constants as C } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { manifestText, newBudget, type ExtractBudget } from "../sandbox/bytes/safeExtract.js";
import type { Sandbox } from "../sandbox/types.js";
import { knownSecrets, redactSecrets } from "../util/redact.js";

/** Where a trial's downloads go (relative to the trial dir). */
export const SANDBOX_SUBDIR = "sandbox";
/** Tail of the verifier output kept as tmax's own copy. */
export const TEST_STDOUT_TAIL_BYTES = 1024 * 1024;

/** What result.json records about the downloads (optional key `downloads`). */
export interface DownloadSummary {
  files: number;
  bytes: number;
  entries: number;
  links: number;
  skipped: number;
  error: string | null;
}

/** The container's /logs dirs, the verifier's first: a flood in the agent's dirs must not crowd them out of the entry cap. */
export const LOG_DIRS = ["/logs/verifier", "/logs/agent", "/logs/artifacts"];

/**
 * Downloads `remotes` (default: all of LOG_DIRS) into `<trial>/sandbox/`. Calls that share a `budget` (e.g. the
 * verifier's logs from the container it ran in, then the rest) share one per-trial cap; the summary counts them all.
 */
export async function collectLogs(sandbox: Sandbox, trialDir: string, opts: { remotes?: string[]; budget?: ExtractBudget } = {}): Promise<DownloadSummary> {
  const dest = path.join(trialDir, SANDBOX_SUBDIR);
  const budget = opts.budget ?? newBudget();
  for (const remote of opts.remotes ?? LOG_DIRS) {
    try {
      await sandbox.download(remote, dest, budget);
    } catch (err) {
      budget.error ??= `download of ${remote} failed: ${String((err as Error).message).split("\n")[0]}`;
      break; // a write error (disk full …) ends the collection; the trial result is still written
    }
  }
  await fs.mkdir(dest, { recursive: true }).catch(() => undefined);
  await fs.writeFile(path.join(dest, ".links.txt"), manifestText(budget)).catch(() => undefined);
  await redactTree(dest, budget).catch(() => undefined);
  await copyTestStdout(dest, trialDir).catch(() => undefined);
  return { files: budget.files, bytes: budget.bytes, entries: budget.entries, links: budget.links.length, skipped: budget.skipped.length, error: budget.error ?? null };
}

/** Masks known secret values in the downloaded files (regular files only, never through links). */
async function redactTree(root: string, budget: ExtractBudget): Promise<void> {
  const secrets = knownSecrets();
  if (secrets.length === 0 || budget.files === 0) return;
  const walk = async (dir: string): Promise<void> => {
    for (const d of await fs.readdir(dir, { withFileTypes: true })) {
      const abs = path.join(dir, d.name);
      if (d.isDirectory()) await walk(abs);
      else if (d.isFile()) {
        const fh = await fs.open(abs, C.O_RDONLY | C.O_NOFOLLOW);
        let text: string;
        try {
          text = (await fh.readFile()).toString("latin1");
        } finally {
          await fh.close();
        }
        // latin1 keeps bytes 1:1; secrets are matched in their latin1 form too
        const masked = secrets.reduce((t, s) => (t.includes(latin1(s)) ? t.split(latin1(s)).join("***") : t), text);
        if (masked !== text) await fs.writeFile(abs, Buffer.from(masked, "latin1"), { flag: C.O_WRONLY | C.O_TRUNC | C.O_NOFOLLOW });
      }
    }
  };
  await walk(root);
}

const latin1 = (s: string) => Buffer.from(s, "utf8").toString("latin1");

async function copyTestStdout(dest: string, trialDir: string): Promise<void> {
  const src = path.join(dest, "verifier", "test-stdout.txt");
  const fh = await fs.open(src, C.O_RDONLY | C.O_NOFOLLOW).catch(() => null);
  if (!fh) return;
  try {
    const st = await fh.stat();
    if (!st.isFile()) return;
    const len = Math.min(st.size, TEST_STDOUT_TAIL_BYTES);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, st.size - len);
    const head = st.size > len ? `[tmax: first ${st.size - len} bytes of ${st.size} omitted]\n` : "";
    await fs.mkdir(path.join(trialDir, "verifier"), { recursive: true });
    await fs.writeFile(path.join(trialDir, "verifier", "test-stdout.txt"), head + redactSecrets(buf.toString("utf8")));
  } finally {
    await fh.close();
  }
}

/** Where --artifact paths go (relative to the trial dir), as Harbor lays them out. */
export const ARTIFACTS_SUBDIR = "artifacts";

/** One entry of Harbor's `artifacts/manifest.json`. */
export interface ArtifactRecord {
  source: string;
  destination: string;
  type: "file" | "directory" | null;
  status: "ok" | "failed";
  service: null;
  error?: string;
}

/**
 * An --artifact path as given: absolute, normalized, not the root, not the manifest's own name. The error is one
 * line naming the flag (checked before a job starts).
 */
export function checkArtifactPath(p: string): string {
  const norm = path.posix.normalize(p).replace(/\/+$/, "") || "/";
  if (!p.startsWith("/") || norm === "/" || p.split("/").includes("..")) {
    throw new Error(`--artifact ${JSON.stringify(p)}: expected an absolute path in the container, other than /, without .. (e.g. /app/output.txt)`);
  }
  if (norm === "/manifest.json") throw new Error(`--artifact ${p}: would land on artifacts/manifest.json, the collection's own record`);
  return norm;
}

/**
 * Harbor's config-driven artifacts: each container path to `<trial>/artifacts/<path>`, best-effort (a missing or
 * failed path is recorded in the manifest and never fails the trial), within the trial's download budget.
 */
export async function collectArtifacts(sandbox: Sandbox, trialDir: string, paths: string[], budget: ExtractBudget): Promise<ArtifactRecord[]> {
  const root = path.join(trialDir, ARTIFACTS_SUBDIR);
  await fs.mkdir(root, { recursive: true });
  const records: ArtifactRecord[] = [];
  for (const source of paths) {
    const rel = source.replace(/^\/+/, "");
    const record: ArtifactRecord = { source, destination: path.posix.join(ARTIFACTS_SUBDIR, rel), type: null, status: "failed", service: null };
    records.push(record);
    try {
      const parent = path.join(root, path.dirname(rel));
      await fs.mkdir(parent, { recursive: true });
      if (!(await sandbox.download(source, parent, budget))) {
        record.error = "not found in the container";
        continue;
      }
      const st = await fs.lstat(path.join(root, rel)).catch(() => null);
      record.type = st?.isDirectory() ? "directory" : st?.isFile() ? "file" : null;
      record.status = st ? "ok" : "failed";
      if (!st) record.error = "nothing was written (see the trial's download summary)";
    } catch (err) {
      record.error = String((err as Error).message).split("\n")[0];
    }
  }
  await fs.writeFile(path.join(root, "manifest.json"), `${JSON.stringify(records, null, 2)}\n`);
  await redactTree(root, budget).catch(() => undefined);
  return records;
}
