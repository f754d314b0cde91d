// The container's /logs come back as untrusted data under `<trial>/sandbox/` (agent, verifier, artifacts),
// through the safe extractor with one per-trial budget; secrets are masked in what was written; a bounded,
// redacted copy of the verifier's output is kept at `<trial>/verifier/test-stdout.txt`.
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
