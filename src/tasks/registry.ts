// Dataset registries in Harbor's format: a JSON list of datasets, each `{ name, version, description, tasks: [{ name,
// git_url?, git_commit_id?, path }] }` (a task without git_url is a local path, relative to the registry file).
// Remote registries are cached so that a dataset already pulled still resolves offline.
import { createHash } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { compare as compareVersions, valid as validVersion } from "@renovatebot/pep440";

/** Harbor's public registry (harbor's RemoteRegistryInfo default). */
export const DEFAULT_REGISTRY_URL = "https://raw.githubusercontent.com/laude-institute/harbor/main/registry.json";

// These values become git arguments on the host: a value starting with `-` would be read as an option (measured:
// git_commit_id `--upload-pack=<cmd>` ran <cmd> on the host during `git fetch`), and `<helper>::<address>` URLs
// run a remote helper program (`ext::` runs any command where git allows it).
const GIT_REF = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$/;
export const RegistryTask = z.looseObject({
  name: z.string().min(1),
  git_url: z
    .string()
    .min(1)
    .refine((u) => !u.startsWith("-"), "a git_url must not start with '-'")
    .refine((u) => !/^[A-Za-z0-9+.-]+::/.test(u), "a git_url with a remote helper (`<helper>::<address>`, e.g. ext::) is refused")
    .nullish(),
  git_commit_id: z
    .string()
    .min(1)
    .refine((c) => GIT_REF.test(c) && !c.includes(".."), "git_commit_id must be a commit id or ref name (letters, digits, . _ / -, not starting with '-')")
    .nullish(),
  path: z.string().min(1).refine((p) => !p.replace(/^(\.?\/+)+/, "").startsWith("-"), "a task path must not start with '-'"),
});
export type RegistryTask = z.infer<typeof RegistryTask>;

export const RegistryDataset = z.looseObject({
  name: z.string().min(1),
  version: z.string().min(1),
  description: z.string().default(""),
  tasks: z.array(RegistryTask),
});
export type RegistryDataset = z.infer<typeof RegistryDataset>;

export const RegistryFile = z.array(RegistryDataset);

export interface Registry {
  /** URL or absolute file path, as given. */
  source: string;
  /** Directory local task paths resolve against (the registry file's dir; the cwd for a URL). */
  baseDir: string;
  datasets: RegistryDataset[];
  /** Set when a remote registry could not be fetched and a cached copy was used. */
  offlineNote?: string;
}

/** A dataset reference: `name@version`, `name` (latest), or Harbor's newer `org/name@ref` ids. */
export interface DatasetRef {
  name: string;
  /** undefined or "latest": the highest version in the registry. */
  version?: string;
}

export function parseDatasetRef(text: string): DatasetRef {
  const at = text.lastIndexOf("@");
  if (at <= 0) return { name: text };
  const version = text.slice(at + 1);
  return version ? { name: text.slice(0, at), version } : { name: text.slice(0, at) };
}

const isUrl = (s: string) => /^https?:\/\//i.test(s);

/** Reads a registry from a URL (cached under `cacheDir/registries`) or a file path. */
export async function loadRegistry(source: string, cacheDir: string, fetchImpl: typeof fetch = fetch): Promise<Registry> {
  if (source.startsWith("file://")) source = new URL(source).pathname;
  if (!isUrl(source)) {
    const file = path.resolve(source);
    const text = await readFile(file, "utf8").catch(() => {
      throw new Error(`registry file not found: ${file}`);
    });
    return { source: file, baseDir: path.dirname(file), datasets: parseRegistry(text, file) };
  }
  const cached = path.join(cacheDir, "registries", `${createHash("sha256").update(source).digest("hex").slice(0, 16)}.json`);
  let text: string;
  let offlineNote: string | undefined;
  try {
    const res = await fetchImpl(source, { signal: AbortSignal.timeout(30_000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    text = await readCapped(res, MAX_REGISTRY_BYTES);
    parseRegistry(text, source); // never cache a broken file
    await mkdir(path.dirname(cached), { recursive: true });
    await writeFile(`${cached}.tmp`, text);
    await rename(`${cached}.tmp`, cached);
  } catch (err) {
    const why = (err as Error).message.split("\n")[0];
    const copy = await readFile(cached, "utf8").catch(() => null);
    if (copy === null) throw new Error(`cannot fetch registry ${source} (${why}) and no cached copy exists; pass --registry FILE`);
    text = copy;
    offlineNote = `registry ${source} unreachable (${why}); using the cached copy`;
  }
  return { source, baseDir: process.cwd(), datasets: parseRegistry(text, source), ...(offlineNote ? { offlineNote } : {}) };
}

/** Harbor's registry.json is a few MB; a body larger than this is refused (measured: an endless body took 6.7 GB of RSS before the 30 s timeout). */
export const MAX_REGISTRY_BYTES = 64 * 1024 * 1024;

async function readCapped(res: Response, max: number): Promise<string> {
  const tooLarge = () => new Error(`registry larger than ${max / 1024 / 1024} MiB`);
  if (Number(res.headers.get("content-length") ?? 0) > max) {
    await res.body?.cancel().catch(() => undefined);
    throw tooLarge();
  }
  if (!res.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge();
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function parseRegistry(text: string, where: string): RegistryDataset[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new Error(`registry ${where} is not valid JSON: ${(err as Error).message.split("\n")[0]}`);
  }
  const parsed = RegistryFile.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`registry ${where} is not in Harbor's format at [${issue.path.join(".")}]: ${issue.message}`);
  }
  return parsed.data;
}

/**
 * The version Harbor picks for a dataset named without one (its registry client's resolve_version): "head" when
 * there is one; else the highest PEP 440 version, where a pre-release is below its release (2.0rc1 < 2.0 <
 * 2.0.post1) and versions that are not PEP 440 are left out; else, when none is, the last in plain string order.
 * Of equal versions (2.0, 2.0.0, v2.0) the registry's first wins.
 */
export function latestVersion(versions: string[]): string | undefined {
  if (versions.includes("head")) return "head";
  const pep440 = versions.filter((v) => validVersion(v) !== null);
  if (pep440.length) return pep440.reduce((best, v) => (compareVersions(v, best) > 0 ? v : best));
  return versions.reduce<string | undefined>((best, v) => (best === undefined || v > best ? v : best), undefined);
}

/** The dataset `ref` names; "latest" or no version picks Harbor's latest (latestVersion). */
export function findDataset(registry: Registry, ref: DatasetRef): RegistryDataset {
  const short = ref.name.includes("/") ? ref.name.split("/").pop()! : ref.name;
  let candidates = registry.datasets.filter((d) => d.name === ref.name);
  if (candidates.length === 0 && short !== ref.name) candidates = registry.datasets.filter((d) => d.name === short);
  if (candidates.length === 0) {
    const names = [...new Set(registry.datasets.map((d) => d.name))].slice(0, 20).join(", ");
    throw new Error(`no dataset named '${ref.name}' in registry ${registry.source}${names ? ` (it has: ${names})` : ""}`);
  }
  if (!ref.version || ref.version === "latest" || ref.version === "head") {
    const latest = latestVersion(candidates.map((d) => d.version));
    return candidates.find((d) => d.version === latest)!;
  }
  if (ref.version.startsWith("sha256:")) throw new Error(`dataset digests (${ref.version}) need Harbor's package registry; this registry pins versions by name@version`);
  const hit = candidates.find((d) => d.version === ref.version);
  if (!hit) throw new Error(`dataset '${ref.name}' has no version '${ref.version}' in registry ${registry.source} (versions: ${candidates.map((d) => d.version).join(", ")})`);
  return hit;
}
