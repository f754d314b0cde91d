// The pieces of a verifier snapshot (the commit and the sandbox made from it are backend.ts's): the engine's
// network files read at start and written back into the snapshot, the size check before a commit, unpausing.
import { randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import type Docker from "dockerode";
import { readFirstMember } from "../bytes/tarball.js";
import { SandboxError, type Sandbox, type SnapshotOptions } from "../types.js";
import { engineMessage, statusCode } from "./engine.js";

/**
 * The network files the engine writes into a container (bind mounts). A snapshot container in the agent
 * container's network namespace shares them, agent edits included; the verifier gets the engine's versions,
 * read right after the agent container started (see docs/reward-integrity.md).
 */
export const NETWORK_FILES = ["/etc/hosts", "/etc/resolv.conf"] as const;
/** Default cap on a snapshot's changed bytes (apparent size), TMAX_SNAPSHOT_MAX_MB overrides. */
export const DEFAULT_SNAPSHOT_MAX_BYTES = 4096 * 2 ** 20;


export async function readNetworkFiles(container: Docker.Container): Promise<Record<string, Buffer>> {
  const files: Record<string, Buffer> = {};
  for (const file of NETWORK_FILES) {
    const archive = await container.getArchive({ path: file }).catch(() => null);
    const member = archive ? await readFirstMember(archive as unknown as Readable, 1 << 20).catch(() => null) : null;
    if (member?.type === "file") files[file] = member.content;
  }
  return files;
}

/** The snapshot's size before a commit: the engine's size of the writable layer (apparent: a sparse file counts whole). */
export async function changedBytes(container: Docker.Container): Promise<number> {
  const inspected = (await container.inspect({ size: true } as never)) as unknown as { SizeRw?: number };
  return typeof inspected.SizeRw === "number" ? inspected.SizeRw : 0;
}

export function snapshotCap(opts: SnapshotOptions): number {
  if (opts.maxBytes !== undefined) return opts.maxBytes;
  const mb = Number(process.env.TMAX_SNAPSHOT_MAX_MB);
  return Number.isFinite(mb) && mb > 0 ? mb * 2 ** 20 : DEFAULT_SNAPSHOT_MAX_BYTES;
}

export async function unpause(container: Docker.Container): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await container.unpause();
      return;
    } catch (err) {
      if (statusCode(err) === 404 || /not paused|is not running/i.test(engineMessage(err))) return;
      if (attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
    }
  }
}

/**
 * Writes the engine's /etc/hosts and /etc/resolv.conf back in a snapshot container (they are the agent
 * container's bind mounts, shared through the network namespace, agent edits included). With bash builtins:
 * the files are bind mounts, written in place.
 */
export async function restoreNetworkFiles(snap: Sandbox, files: Record<string, Buffer>): Promise<void> {
  const names = Object.keys(files);
  if (names.length === 0) return;
  const tmp = `/.tmax-net-${randomBytes(8).toString("hex")}`;
  for (const [i, file] of names.entries()) await snap.writeFile(`${tmp}/${i}`, files[file], 0o644);
  const copy = names.map((file, i) => `{ IFS= read -r -d '' c < ${tmp}/${i}; printf '%s' "$c" > ${file}; } || ok=1`).join("\n");
  const run = await snap.exec(["/bin/bash", "--noprofile", "--norc", "-c", `ok=0\n${copy}\n/bin/rm -rf ${tmp}\nexit $ok`], { env: { PATH: "/usr/bin:/bin:/usr/sbin:/sbin", LC_ALL: "C" }, cwd: "/", timeoutSec: 30, direct: true });
  if (run.exitCode !== 0) throw new SandboxError(`cannot restore the engine's network files in the verifier's snapshot: ${run.stderr.trim().split("\n")[0]}`, "create_failed");
}
