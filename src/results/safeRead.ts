// The one reader of job and rollout dirs for everything that shows them (explorer, `report`): their files may
// have been planted by a sandbox or by a local user who can write under the dir, so a file is never opened by
// its name. It is reached from a descriptor of the root, one component at a time, each opened with
// O_NOFOLLOW (O_DIRECTORY for the dirs on the way) through `/proc/self/fd/<dir fd>/<name>` — openat(2) as Node
// offers it. A link anywhere on the way is refused rather than followed, so swapping a dir for a link between
// a check and the open (measured before: 253 of 3,000 tries read a root-only file) has nothing to win: there
// is no check by name left to race. The final descriptor is fstat'ed: only regular files (never a fifo, which
// would block, or a device), read up to a cap; dirs are listed through their descriptor too.
import { closeSync, constants as C, fstatSync, openSync, readSync, readdirSync, type Dirent } from "node:fs";
import { open, readdir, type FileHandle } from "node:fs/promises";
import path from "node:path";

/** Largest JSON file (result.json, trajectory) the explorer and report parse. */
export const MAX_JSON_BYTES = 32 * 1024 * 1024;

export class UnsafeFileError extends Error {
  readonly code: string;
  constructor(message: string, code = "EUNSAFE") {
    super(message);
    this.name = "UnsafeFileError";
    this.code = code;
  }
}

const BASE = C.O_RDONLY | C.O_NOFOLLOW | C.O_NOCTTY; // libuv adds O_CLOEXEC itself
const DIR_FLAGS = BASE | C.O_DIRECTORY;
const FILE_FLAGS = BASE | C.O_NONBLOCK;
const via = (dirFd: number, name: string) => `/proc/self/fd/${dirFd}/${name}`;

/** The components of `file` below `root`; refused when it is not below it (lexically: no `..`, not absolute). */
function componentsUnder(root: string, file: string): string[] {
  const rel = path.relative(path.resolve(root), path.resolve(file));
  if (rel === "") return [];
  const parts = rel.split(path.sep);
  if (path.isAbsolute(rel) || parts.some((p) => p === "" || p === "." || p === "..")) throw new UnsafeFileError(`${file} is outside ${root}: not opened`);
  return parts;
}

/** An open error with the file's own name (not the /proc path) and its code kept; a link is an UnsafeFileError. */
function describeOpen(err: unknown, file: string, part: string, last: boolean): Error {
  const code = (err as NodeJS.ErrnoException).code ?? "EIO";
  if (code === "ELOOP" || code === "ENOTDIR") return new UnsafeFileError(`${file}: ${part} is a symbolic link or not a directory (links are not followed)`, code);
  return Object.assign(new Error(`cannot open ${file}: ${code}`), { code });
}

function checkKind(isFile: boolean, isDir: boolean, want: "file" | "dir", file: string): void {
  if (want === "file" ? !isFile : !isDir) throw new UnsafeFileError(`${file} is not a ${want === "file" ? "regular file" : "directory"}: not opened`);
}

/** Opens `file` (a regular file, or a dir) below `root` without following any link; the caller closes it. */
export async function openUnder(root: string, file: string, want: "file" | "dir" = "file"): Promise<FileHandle> {
  const parts = componentsUnder(root, file);
  // the root itself is the operator's choice: the one name resolved as given
  let dir = await open(root, DIR_FLAGS & ~C.O_NOFOLLOW);
  try {
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      let next: FileHandle;
      try {
        next = await open(via(dir.fd, parts[i]!), last && want === "file" ? FILE_FLAGS : DIR_FLAGS);
      } catch (err) {
        throw describeOpen(err, file, parts[i]!, last);
      }
      await dir.close();
      dir = next;
    }
    const st = await dir.stat();
    checkKind(st.isFile(), st.isDirectory(), want, file);
    const opened = dir;
    dir = undefined as unknown as FileHandle;
    return opened;
  } finally {
    await dir?.close();
  }
}

/** `openUnder` for synchronous readers (the job reader of `tmax report`): returns a descriptor. */
export function openUnderSync(root: string, file: string, want: "file" | "dir" = "file"): number {
  const parts = componentsUnder(root, file);
  let fd = openSync(root, DIR_FLAGS & ~C.O_NOFOLLOW);
  try {
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      let next: number;
      try {
        next = openSync(via(fd, parts[i]!), last && want === "file" ? FILE_FLAGS : DIR_FLAGS);
      } catch (err) {
        throw describeOpen(err, file, parts[i]!, last);
      }
      closeSync(fd);
      fd = next;
    }
    const st = fstatSync(fd);
    checkKind(st.isFile(), st.isDirectory(), want, file);
    const opened = fd;
    fd = -1;
    return opened;
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/** The whole file as text when it is a regular file below `root` of at most `maxBytes` (else an error naming the size). */
export async function readTextCapped(file: string, root: string, maxBytes = MAX_JSON_BYTES): Promise<string> {
  const fh = await openUnder(root, file);
  try {
    const { size } = await fh.stat();
    if (size > maxBytes) throw new UnsafeFileError(`file too large to show: ${mb(size)} (cap ${mb(maxBytes)})`, "EFBIG");
    const buf = Buffer.alloc(size);
    const { bytesRead } = await fh.read(buf, 0, size, 0);
    return buf.toString("utf8", 0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** `readTextCapped`, synchronously. */
export function readTextCappedSync(file: string, root: string, maxBytes = MAX_JSON_BYTES): string {
  const fd = openUnderSync(root, file);
  try {
    const { size } = fstatSync(fd);
    if (size > maxBytes) throw new UnsafeFileError(`file too large to show: ${mb(size)} (cap ${mb(maxBytes)})`, "EFBIG");
    const buf = Buffer.alloc(size);
    const bytesRead = readSync(fd, buf, 0, size, 0);
    return buf.toString("utf8", 0, bytesRead);
  } finally {
    closeSync(fd);
  }
}

/** The last `maxBytes` of a regular file below `root`, with a note of what was left out; null when it cannot be opened. */
export async function readTail(file: string, maxBytes: number, root: string): Promise<string | null> {
  let fh: FileHandle;
  try {
    fh = await openUnder(root, file);
  } catch {
    return null;
  }
  try {
    const { size } = await fh.stat();
    const len = Math.min(size, maxBytes);
    const buf = Buffer.alloc(len);
    const { bytesRead } = await fh.read(buf, 0, len, size - len);
    const text = buf.toString("utf8", 0, bytesRead);
    return size > len ? `… [${size - len} earlier bytes]\n${text}` : text;
  } finally {
    await fh.close();
  }
}

/** True when `file` is a regular file below `root` reached without a link (not a fifo or device). */
export async function isRegularFile(file: string, root: string): Promise<boolean> {
  try {
    await (await openUnder(root, file)).close();
    return true;
  } catch {
    return false;
  }
}

/** `isRegularFile`, synchronously. */
export function isRegularFileSync(file: string, root: string): boolean {
  try {
    closeSync(openUnderSync(root, file));
    return true;
  } catch {
    return false;
  }
}

/** The entries of dir `dir` below `root`, listed through its descriptor (no link on the way is followed). */
export async function listDir(dir: string, root: string): Promise<Dirent[]> {
  const fh = await openUnder(root, dir, "dir");
  try {
    return await readdir(`/proc/self/fd/${fh.fd}`, { withFileTypes: true });
  } finally {
    await fh.close();
  }
}

/** `listDir`, synchronously. */
export function listDirSync(dir: string, root: string): Dirent[] {
  const fd = openUnderSync(root, dir, "dir");
  try {
    return readdirSync(`/proc/self/fd/${fd}`, { withFileTypes: true });
  } finally {
    closeSync(fd);
  }
}

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;
