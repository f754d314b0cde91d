// Files in and out of a docker sandbox's container through the engine's archive API (no program runs in the
// container): put a tar at /, get a path as tar, the archive-stat of a path, the links on a path.
import type { Readable } from "node:stream";
import type Docker from "dockerode";
import { SandboxError, type PathStat } from "../types.js";
import { engineError, engineMessage, statusCode } from "./engine.js";

/** Extracts `archive` at `/` (members carry absolute paths minus the slash; engines create missing parents). */
export async function putArchive(docker: Docker, container: Docker.Container, archive: Readable, what: string): Promise<void> {
  try {
    await container.putArchive(archive as unknown as NodeJS.ReadableStream, { path: "/" });
  } catch (err) {
    throw engineError(docker, err, "exec_failed", `cannot ${what}`);
  }
}

const MODE_DIR = 2 ** 31;
const MODE_SYMLINK = 2 ** 27;

/** The engine's archive-stat of a path (HEAD on the archive endpoint: no program runs in the container). */
export async function statPath(container: Docker.Container, remotePath: string): Promise<PathStat | null> {
  let res: { headers?: Record<string, string | string[] | undefined>; resume?: () => void };
  try {
    res = (await container.infoArchive({ path: remotePath })) as typeof res;
  } catch (err) {
    const code = statusCode(err);
    if (code === 404 || code === 400) return null; // missing, or a loop of links
    throw new SandboxError(`cannot stat ${remotePath}: ${engineMessage(err)}`, "exec_failed");
  }
  res.resume?.();
  const header = res.headers?.["x-docker-container-path-stat"];
  if (typeof header !== "string") throw new SandboxError(`cannot stat ${remotePath}: the engine sent no path stat`, "exec_failed");
  const st = JSON.parse(Buffer.from(header, "base64").toString("utf8")) as { size: number; mode: number; mtime: string; linkTarget?: string };
  const link = Math.floor(st.mode / MODE_SYMLINK) % 2 === 1;
  return { size: st.size, perm: st.mode % 0o10000, mtime: st.mtime, dir: Math.floor(st.mode / MODE_DIR) % 2 === 1, link, ...(link && st.linkTarget ? { linkTarget: st.linkTarget } : {}) };
}

/** The first component of `remotePath` that is a link, and where it leads; null when none is. */
export async function linkOnPath(container: Docker.Container, remotePath: string): Promise<{ at: string; to: string } | null> {
  const parts = remotePath.split("/").filter(Boolean);
  for (let i = 1; i <= parts.length; i++) {
    const at = `/${parts.slice(0, i).join("/")}`;
    const st = await statPath(container, at);
    if (!st) return null;
    if (st.link) return { at, to: st.linkTarget ?? "?" };
  }
  return null;
}

/** A tar stream of `remotePath`, or null when it does not exist. */
export async function getArchive(docker: Docker, container: Docker.Container, remotePath: string): Promise<Readable | null> {
  try {
    return (await container.getArchive({ path: remotePath })) as unknown as Readable;
  } catch (err) {
    if (statusCode(err) === 404 && /no such file|not found|could not find/i.test(engineMessage(err))) return null;
    throw engineError(docker, err, "exec_failed", `cannot read ${remotePath}`);
  }
}
