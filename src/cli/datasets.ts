// `tmax datasets list|pull|path`, and the resolution of `--dataset` (a directory, else a registry name@version).
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { z } from "zod";
import { cacheRoot, isRegistryRef, pullDataset, type PulledDataset } from "../tasks/datasets.js";
import { DEFAULT_REGISTRY_URL, loadRegistry } from "../tasks/registry.js";
import { stripControl } from "../util/terminal.js";
import { emitJson, errColor, isQuiet } from "./render.js";

const { dim, yellow } = errColor; // everything here but the results goes to stderr

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
export async function resolveDatasetArg(arg: string, registry?: string, log: (l: string) => void = (l) => isQuiet() || console.error(dim(l))): Promise<ResolvedDataset> {
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

/** `tmax datasets list --json`. */
export const DatasetsListJson = z.object({
  registry: z.string(),
  /** Set when the registry could not be fetched and a cached copy was used. */
  offline_note: z.string().nullable(),
  datasets: z.array(z.object({ name: z.string(), version: z.string(), description: z.string(), tasks: z.number().int() })),
});

const REGISTRY_HELP = "registry (env TMAX_REGISTRY; default Harbor's public registry)";

export function registerDatasets(program: Command): void {
  const datasets = program.command("datasets").description("datasets from a registry in Harbor's format, cached under ~/.cache/tmax (or $XDG_CACHE_HOME/tmax)");
  datasets
    .command("list")
    .description("datasets of the registry: name@version, task count, description (tab-separated)")
    .option("--registry <url|file>", REGISTRY_HELP)
    .option("--json", "print one JSON document")
    .action(async (o: { registry?: string; json?: boolean }) => {
      process.exitCode = await datasetsList(o);
    });
  datasets
    .command("pull <name@version>")
    .description("fetch a dataset's tasks (git, pinned commit) into the cache")
    .option("--registry <url|file>", REGISTRY_HELP)
    .option("--refresh", "fetch again even when cached")
    .action(async (ref: string, o: { registry?: string; refresh?: boolean }) => {
      const d = await datasetsPull(ref, o);
      console.log(stripControl(`${d.name}@${d.version}${d.commit ? ` commit ${d.commit}` : ""} → ${d.dir}`));
    });
  datasets
    .command("path <name@version>")
    .description("print the local dir of a dataset (fetching it when missing)")
    .option("--registry <url|file>", REGISTRY_HELP)
    .action(async (ref: string, o: { registry?: string }) => {
      console.log(stripControl((await datasetsPull(ref, o)).dir));
    });
}

export async function datasetsList(o: { registry?: string; json?: boolean }): Promise<number> {
  const reg = await loadRegistry(registrySource(o.registry), cacheRoot());
  if (o.json) {
    const datasets = reg.datasets.map((d) => ({ name: d.name, version: d.version, description: d.description, tasks: d.tasks.length }));
    emitJson(DatasetsListJson, { registry: reg.source, offline_note: reg.offlineNote ?? null, datasets });
    return 0;
  }
  if (reg.offlineNote) console.error(yellow(`note: ${reg.offlineNote}`));
  for (const d of reg.datasets) console.log(stripControl(`${d.name}@${d.version}\t${d.tasks.length} tasks\t${stripControl(d.description).replace(/\s+/g, " ").slice(0, 80)}`));
  return 0;
}

export async function datasetsPull(ref: string, o: { registry?: string; refresh?: boolean }): Promise<PulledDataset> {
  const pulled = await pullDataset(ref, { registry: registrySource(o.registry), refresh: o.refresh, onLog: (l) => isQuiet() || console.error(dim(stripControl(l))) });
  for (const n of pulled.notes) console.error(yellow(`note: ${stripControl(n)}`));
  return pulled;
}
