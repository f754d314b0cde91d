// `tmax datasets list|pull|path`, and the resolution of `--dataset` (a directory, else a registry name@version).
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { cacheRoot, isRegistryRef, pullDataset, type PulledDataset } from "../tasks/datasets.js";
import { DEFAULT_REGISTRY_URL, loadRegistry } from "../tasks/registry.js";
import { stripControl } from "../util/terminal.js";
import { dim, yellow } from "./render.js";

/** --registry, else $TMAX_REGISTRY, else Harbor's public registry. */
export function registrySource(flag?: string): string {
  return flag ?? process.env.TMAX_REGISTRY ?? DEFAULT_REGISTRY_URL;
}

export interface ResolvedDataset {
  dir: string;
  source?: { name: string; version: string; commit: string | null; registry: string };
}

/**
 * A directory is used as is; a registry reference (name, name@version, org/name@ref: isRegistryRef) is looked up
 * in the registry; anything else is a path that does not exist (a typo), said in one line without network access.
 */
export async function resolveDatasetArg(arg: string, registry?: string, log: (l: string) => void = (l) => console.error(dim(l))): Promise<ResolvedDataset> {
  if (existsSync(arg)) {
    if (statSync(arg).isDirectory()) return { dir: path.resolve(arg) };
    throw new Error(`--dataset ${path.resolve(arg)}: is a file, not a directory of tasks`);
  }
  if (!isRegistryRef(arg)) throw new Error(`no such directory: ${path.resolve(arg)} (a registry dataset is name or name@version)`);
  // registry text (names, URLs, descriptions) is the registry author's: never an escape sequence on the terminal
  const pulled = await pullDataset(arg, { registry: registrySource(registry), onLog: (l) => log(stripControl(l)) });
  for (const n of pulled.notes) log(yellow(`note: ${stripControl(n)}`));
  log(stripControl(`dataset ${pulled.name}@${pulled.version}${pulled.commit ? ` (commit ${pulled.commit.slice(0, 12)})` : ""}: ${pulled.cached ? "cached" : "fetched"} at ${pulled.dir}`));
  return { dir: pulled.dir, source: { name: pulled.name, version: pulled.version, commit: pulled.commit, registry: pulled.registry } };
}

export async function datasetsList(o: { registry?: string }): Promise<number> {
  const reg = await loadRegistry(registrySource(o.registry), cacheRoot());
  if (reg.offlineNote) console.error(yellow(`note: ${reg.offlineNote}`));
  for (const d of reg.datasets) console.log(stripControl(`${d.name}@${d.version}\t${d.tasks.length} tasks\t${stripControl(d.description).replace(/\s+/g, " ").slice(0, 80)}`));
  return 0;
}

export async function datasetsPull(ref: string, o: { registry?: string; refresh?: boolean }): Promise<PulledDataset> {
  const pulled = await pullDataset(ref, { registry: registrySource(o.registry), refresh: o.refresh, onLog: (l) => console.error(dim(stripControl(l))) });
  for (const n of pulled.notes) console.error(yellow(`note: ${stripControl(n)}`));
  return pulled;
}
