// Container → host extraction that treats every archive as data. Only regular files and directories are
// created, with masked modes (0644 / 0755: never setuid, setgid, sticky or world-writable); symlinks and hard
// links are recorded as text, never recreated; no path leaves the target dir; sizes and counts are checked
// from the tar headers before anything is written; any write error aborts the whole stream.
import { constants as C } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import tar from "tar-stream";

/** Per-trial caps on what a sandbox may hand back (shared by every download of one trial through a budget). */
export interface ExtractLimits {
  /** Sum of the sizes of the files written (default 256 MiB). */
  maxTotalBytes: number;
  /** One file's size from its header (default 64 MiB); larger files are skipped and recorded. */
  maxFileBytes: number;
  /** Archive members looked at, of any type (default 10,000); past it the stream is stopped. */
  maxEntries: number;
  /** Bytes read from one archive, skipped members included (default 1 GiB); past it that stream is stopped. */
  maxStreamBytes: number;
  /** Path components below the target (default 64). */
  maxDepth: number;
  /** Wall-clock limit of one download (default 300 s). */
  timeoutMs: number;
}

export const DEFAULT_EXTRACT_LIMITS: ExtractLimits = {
  maxTotalBytes: 256 * 1024 * 1024,
  maxFileBytes: 64 * 1024 * 1024,
  maxEntries: 10_000,
  maxStreamBytes: 1024 * 1024 * 1024,
  maxDepth: 64,
  timeoutMs: 300_000,
};

/** What one trial's downloads did; mutated by each extraction that shares it (so caps are per trial). */
export interface ExtractBudget {
  limits: ExtractLimits;
  files: number;
  dirs: number;
  bytes: number;
  entries: number;
  streamBytes: number;
  /** Symlinks and hard links found (never created): `path -> target`. */
  links: Array<{ path: string; type: "symlink" | "hardlink"; target: string }>;
  /** Members not written, with the reason. */
  skipped: Array<{ path: string; reason: string }>;
  /** Set once a cap stopped a stream or a write failed. */
  error?: string;
}

export function newBudget(limits: Partial<ExtractLimits> = {}): ExtractBudget {
  return { limits: { ...DEFAULT_EXTRACT_LIMITS, ...limits }, files: 0, dirs: 0, bytes: 0, entries: 0, streamBytes: 0, links: [], skipped: [] };
}

export class ExtractError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ExtractError";
  }
}

/** Max records kept in the budget's lists (the counts stay exact). */
const MAX_RECORDS = 1000;
const FILE_FLAGS = C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW;

function record<T>(list: T[], item: T): void {
  if (list.length < MAX_RECORDS) list.push(item);
}

/** Printable, one-line form of an archive name (names are sandbox-chosen bytes). */
export function printableName(name: string): string {
  // eslint-disable-next-line no-control-regex
  return JSON.stringify(name.slice(0, 300)).slice(1, -1).replace(/[\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/g, "?");
}

/**
 * The safe relative path of an archive member, or a reason to skip it: no absolute names, no `..`, no NUL,
 * no components over 255 bytes, at most `maxDepth` components.
 */
export function memberPath(name: string, maxDepth: number): { rel: string } | { reason: string } {
  if (name.includes("\0")) return { reason: "name contains NUL" };
  if (name.startsWith("/")) return { reason: "absolute name" };
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.length === 0) return { reason: "empty name" };
  if (parts.some((p) => p === "..")) return { reason: "name contains '..'" };
  if (parts.some((p) => Buffer.byteLength(p) > 255)) return { reason: "path component longer than 255 bytes" };
  if (parts.length > maxDepth) return { reason: `deeper than ${maxDepth} levels` };
  return { rel: parts.join("/") };
}

/**
 * Extracts a tar stream into `destDir` (created) as plain data, charging `budget`. Resolves when the stream
 * is done; a cap that stops the stream sets `budget.error` and resolves; a write error (full disk, name too
 * long for the filesystem …) or a broken archive rejects with an ExtractError. In every case `source` is
 * destroyed, so no socket keeps the process alive.
 */
export async function safeExtract(source: Readable, destDir: string, budget: ExtractBudget = newBudget()): Promise<ExtractBudget> {
  const lim = budget.limits;
  const streamStart = budget.streamBytes;
  const root = path.resolve(destDir);
  await fs.mkdir(root, { recursive: true });
  const rootStat = await fs.lstat(root);
  if (!rootStat.isDirectory()) throw new ExtractError(`${root} is not a directory`);
  // Directories known to be real dirs we created (or checked) under root: parents are never links.
  const knownDirs = new Set<string>([""]);

  const extract = tar.extract();
  let stopped: string | undefined;
  const stop = (why: string) => {
    stopped ??= why;
    (source as Partial<Readable>).unpipe?.(extract as unknown as NodeJS.WritableStream);
    source.destroy();
  };
  const timer = setTimeout(() => {
    stop(`download took longer than ${Math.round(lim.timeoutMs / 1000)}s`);
    extract.destroy(new ExtractError(stopped!));
  }, lim.timeoutMs);
  source.on("data", (chunk: Buffer) => {
    budget.streamBytes += chunk.length;
    if (budget.streamBytes - streamStart > lim.maxStreamBytes && !stopped) {
      stop(`archive larger than ${lim.maxStreamBytes} bytes: the rest was not read`);
      extract.destroy(new ExtractError(stopped!));
    }
  });
  source.on("error", (err) => extract.destroy(err));
  source.pipe(extract as unknown as NodeJS.WritableStream);

  async function ensureDir(rel: string): Promise<void> {
    if (knownDirs.has(rel)) return;
    await ensureDir(path.posix.dirname(rel) === "." ? "" : path.posix.dirname(rel));
    const abs = path.join(root, rel);
    try {
      await fs.mkdir(abs, { mode: 0o755 });
      budget.dirs++;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const st = await fs.lstat(abs);
      if (!st.isDirectory()) throw Object.assign(new Error(`${rel} exists and is not a directory`), { code: "ENOTDIR" });
    }
    knownDirs.add(rel);
  }

  let first = true;
  try {
    for await (const entry of extract) {
      const { header } = entry;
      const isFirst = first;
      first = false;
      budget.entries++;
      if (budget.entries > lim.maxEntries) {
        entry.resume();
        stop(`more than ${lim.maxEntries} entries: the rest was not read`);
        break;
      }
      const name = header.name ?? "";
      const where = memberPath(name, lim.maxDepth);
      if ("reason" in where) {
        record(budget.skipped, { path: printableName(name), reason: where.reason });
        entry.resume();
        continue;
      }
      const rel = where.rel;
      const type = header.type;
      if (type === "directory") {
        entry.resume();
        try {
          await ensureDir(rel);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOTDIR") throw err;
          record(budget.skipped, { path: printableName(rel), reason: "a file of that name exists" });
        }
      } else if (type === "file" || type === "contiguous-file") {
        const size = header.size ?? 0;
        if (size > lim.maxFileBytes) {
          record(budget.skipped, { path: printableName(rel), reason: `file of ${size} bytes over the ${lim.maxFileBytes}-byte cap` });
          entry.resume();
          continue;
        }
        if (budget.bytes + size > lim.maxTotalBytes) {
          record(budget.skipped, { path: printableName(rel), reason: `total over the ${lim.maxTotalBytes}-byte cap` });
          entry.resume();
          continue;
        }
        const parent = path.posix.dirname(rel);
        try {
          await ensureDir(parent === "." ? "" : parent);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOTDIR") throw err;
          record(budget.skipped, { path: printableName(rel), reason: "a parent is not a directory" });
          entry.resume();
          continue;
        }
        const mode = (header.mode ?? 0o644) & 0o111 ? 0o755 : 0o644;
        let handle: fs.FileHandle;
        try {
          handle = await fs.open(path.join(root, rel), FILE_FLAGS, 0o600);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
          record(budget.skipped, { path: printableName(rel), reason: "duplicate entry" });
          entry.resume();
          continue;
        }
        budget.bytes += size; // charged from the header, before a byte is written
        try {
          let written = 0;
          for await (const chunk of entry) {
            written += (chunk as Buffer).length;
            if (written > size) throw new ExtractError(`${printableName(rel)}: more data than its header says`);
            await writeAll(handle, chunk as Buffer);
          }
          await handle.chmod(mode);
        } catch (err) {
          // a partial file (e.g. on a full disk) is removed so the trial's own result can still be written
          await handle.close().catch(() => undefined);
          await fs.unlink(path.join(root, rel)).catch(() => undefined);
          throw err;
        }
        await handle.close();
        budget.files++;
      } else if (type === "symlink" || type === "link") {
        entry.resume();
        if (isFirst) record(budget.skipped, { path: printableName(rel), reason: "the downloaded path itself is a link: refused" });
        record(budget.links, { path: printableName(rel), type: type === "link" ? "hardlink" : "symlink", target: printableName(header.linkname ?? "") });
      } else {
        entry.resume();
        record(budget.skipped, { path: printableName(rel), reason: `${type ?? "unknown"} entry (only files and directories are kept)` });
      }
    }
  } catch (err) {
    stop("extraction failed");
    if (stopped && stopped !== "extraction failed" && err instanceof ExtractError && err.message === stopped) {
      // a cap or the deadline stopped the stream: recorded below, not an error of the archive
    } else {
      const e = err as NodeJS.ErrnoException;
      const msg = e.code ? `${e.code}: ${e.message}` : e.message;
      budget.error = `extraction aborted: ${oneLine(msg)}`;
      throw new ExtractError(budget.error);
    }
  } finally {
    clearTimeout(timer);
    source.destroy();
    extract.destroy();
  }
  if (stopped) budget.error ??= stopped;
  return budget;
}

/** Writes all of `buf` (a short write, e.g. on a nearly full disk, is retried so that ENOSPC surfaces). */
async function writeAll(handle: fs.FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await handle.write(buf, off, buf.length - off);
    if (bytesWritten <= 0) throw Object.assign(new Error("write made no progress"), { code: "EIO" });
    off += bytesWritten;
  }
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, " ").trim().slice(0, 300);
}

/** The budget as manifest text: links and skipped members, one per line (written next to the downloads). */
export function manifestText(budget: ExtractBudget): string {
  const lines = [
    `# tmax download manifest: ${budget.files} files, ${budget.dirs} dirs, ${budget.bytes} bytes, ${budget.entries} entries`,
    ...(budget.error ? [`# stopped: ${budget.error}`] : []),
    ...budget.links.map((l) => `${l.type}\t${l.path}\t-> ${l.target}`),
    ...budget.skipped.map((s) => `skipped\t${s.path}\t${s.reason}`),
  ];
  return lines.join("\n") + "\n";
}
