// Tar helpers for moving files in and out of containers (the engine's archive API) and for build contexts.
import { createReadStream, type Stats } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import tar from "tar-stream";

/** A file, directory or symlink found on the host, with its path relative to the walked root (posix form). */
export interface LocalEntry {
  abs: string;
  rel: string;
  stat: Stats;
  linkTarget?: string;
}

/**
 * Lists everything under `root` (not `root` itself), sorted by path so that hashing and packing are stable.
 * Sockets, fifos and devices are skipped. `skip(rel, isDir)` prunes entries (a skipped dir is not entered).
 */
export async function listTree(root: string, skip?: (rel: string, isDir: boolean) => boolean): Promise<LocalEntry[]> {
  const out: LocalEntry[] = [];
  async function walk(dirAbs: string, dirRel: string): Promise<void> {
    const names = (await fs.readdir(dirAbs)).sort();
    for (const name of names) {
      const abs = path.join(dirAbs, name);
      const rel = dirRel ? `${dirRel}/${name}` : name;
      const stat = await fs.lstat(abs);
      const isDir = stat.isDirectory();
      if (skip?.(rel, isDir)) continue;
      if (stat.isSymbolicLink()) out.push({ abs, rel, stat, linkTarget: await fs.readlink(abs) });
      else if (isDir || stat.isFile()) out.push({ abs, rel, stat });
      if (isDir) await walk(abs, rel);
    }
  }
  await walk(root, "");
  return out;
}

/** One tar member: a host entry (streamed from disk) or in-memory content. */
export type PackItem = { name: string; local: LocalEntry } | { name: string; content: Buffer; mode: number };

/** A tar stream of `items`, written in order as the consumer reads; errors destroy the stream. */
export function packItems(items: PackItem[]): Readable {
  const pack = tar.pack();
  (async () => {
    for (const item of items) {
      if ("content" in item) {
        await new Promise<void>((resolve, reject) =>
          pack.entry({ name: item.name, mode: item.mode, uid: 0, gid: 0, mtime: new Date() }, item.content, (e) =>
            e ? reject(e) : resolve(),
          ),
        );
        continue;
      }
      const { stat, abs, linkTarget } = item.local;
      const base = { name: item.name, mode: stat.mode & 0o7777, uid: 0, gid: 0, mtime: stat.mtime };
      if (linkTarget !== undefined) {
        await new Promise<void>((resolve, reject) =>
          pack.entry({ ...base, type: "symlink", linkname: linkTarget }, (e) => (e ? reject(e) : resolve())),
        );
      } else if (stat.isDirectory()) {
        await new Promise<void>((resolve, reject) =>
          pack.entry({ ...base, type: "directory" }, (e) => (e ? reject(e) : resolve())),
        );
      } else {
        await new Promise<void>((resolve, reject) => {
          const sink = pack.entry({ ...base, type: "file", size: stat.size }, (e) => (e ? reject(e) : resolve()));
          const source = createReadStream(abs);
          source.on("error", reject);
          source.pipe(sink as unknown as NodeJS.WritableStream);
        });
      }
    }
    pack.finalize();
  })().catch((err) => pack.destroy(err));
  return pack as unknown as Readable;
}

/** Pack items for a local file or directory so that it lands as `<destPrefix>/<basename>` when extracted at `/`. */
export async function packLocalPath(localPath: string, destPrefix: string): Promise<Readable> {
  const abs = path.resolve(localPath);
  const stat = await fs.lstat(abs);
  const top = joinTarName(destPrefix, path.basename(abs));
  const root: LocalEntry = { abs, rel: "", stat, linkTarget: stat.isSymbolicLink() ? await fs.readlink(abs) : undefined };
  const items: PackItem[] = [{ name: top, local: root }];
  if (stat.isDirectory()) {
    for (const entry of await listTree(abs)) items.push({ name: `${top}/${entry.rel}`, local: entry });
  }
  return packItems(items);
}

/** Tar member name for `dir/name` where `dir` is an absolute container path (members are relative to `/`). */
export function joinTarName(dir: string, name: string): string {
  return path.posix.join(dir, name).replace(/^\/+/, "");
}

/** Default cap of `readFirstMember` / `Sandbox.readFile` (bytes). */
export const DEFAULT_READ_MAX_BYTES = 16 * 1024 * 1024;

/**
 * The first member of a tar stream when it is a regular file or a symlink. A file whose header says it is
 * larger than `maxBytes` is refused before anything is buffered (`{ type: "too_large" }`); the stream is then
 * destroyed rather than drained.
 */
export async function readFirstMember(
  source: Readable,
  maxBytes = DEFAULT_READ_MAX_BYTES,
): Promise<{ type: "file"; content: Buffer } | { type: "symlink"; target: string } | { type: "other" } | { type: "too_large"; size: number } | null> {
  const extract = tar.extract();
  source.on("error", (err) => extract.destroy(err));
  source.pipe(extract as unknown as NodeJS.WritableStream);
  try {
    for await (const entry of extract) {
      const { header } = entry;
      if (header.type === "file" || header.type === "contiguous-file") {
        const size = header.size ?? 0;
        if (size > maxBytes) {
          entry.resume();
          return { type: "too_large", size };
        }
        const chunks: Buffer[] = [];
        let got = 0;
        for await (const chunk of entry) {
          got += (chunk as Buffer).length;
          if (got > maxBytes) return { type: "too_large", size: got };
          chunks.push(chunk as Buffer);
        }
        return { type: "file", content: Buffer.concat(chunks) };
      }
      entry.resume();
      return header.type === "symlink" ? { type: "symlink", target: header.linkname ?? "" } : { type: "other" };
    }
    return null;
  } finally {
    source.destroy();
    extract.destroy();
  }
}
