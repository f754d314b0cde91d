// `tmax sandbox guard|prune`: the host guard, and tmax's leftover containers and snapshot images.
import { Option, type Command } from "commander";
import { z } from "zod";
import { pruneLeftovers } from "../sandbox/cleanup.js";
import { createBackend } from "../sandbox/index.js";
import type { PruneCandidate } from "../sandbox/types.js";
import { stripControl } from "../util/terminal.js";
import { UsageError } from "./exitCodes.js";
import { emitJson } from "./render.js";

/** `tmax sandbox prune --json`: with --dry-run `candidates` is what would go and `removed` is null; without, `candidates` is empty and `removed` counts. */
export const SandboxPruneJson = z.object({
  backend: z.enum(["docker", "daytona"]),
  selection: z.enum(["owner-gone", "job", "all"]),
  job: z.string().nullable(),
  dry_run: z.boolean(),
  candidates: z.array(
    z.object({ kind: z.enum(["container", "snapshot-image", "sandbox"]), id: z.string(), name: z.string(), job: z.string().nullable(), job_dir: z.string().nullable(), owner: z.string().nullable() }),
  ),
  removed: z.object({ containers: z.number().int(), images: z.number().int() }).nullable(),
});

/** `tmax sandbox guard --json`. */
export const SandboxGuardJson = z.object({ installed: z.boolean(), detail: z.string() });

interface PruneOptions {
  job?: string;
  all?: boolean;
  backend: "docker" | "daytona";
  dryRun?: boolean;
  json?: boolean;
}

export function registerSandbox(program: Command): void {
  const sandbox = program.command("sandbox").description("manage tmax's containers and the host guard");
  sandbox
    .command("guard")
    .description("install (or --check, --remove) the firewall chain that stops bridge containers from opening connections to this host")
    .option("--check", "only report whether the guard is in place (exit 1 when not)")
    .option("--remove", "remove the guard")
    .option("--json", "print the status as one JSON document")
    .action(async (o: { check?: boolean; remove?: boolean; json?: boolean }) => {
      const { hostGuardStatus, hostInterfaces, installHostGuard, removeHostGuard } = await import("../sandbox/docker/hostGuard.js");
      const { discoverEngine } = await import("../sandbox/docker/discover.js");
      if (o.check && o.remove) throw new UsageError("--check and --remove exclude each other");
      // podman's bridges, and Docker Engine's when it is the engine found or runs on this host
      const ifaces = await hostInterfaces(process.env, (await discoverEngine()).engine?.kind);
      if (o.remove) await removeHostGuard();
      else if (!o.check) await installHostGuard(ifaces);
      const status = await hostGuardStatus(ifaces);
      if (o.json) emitJson(SandboxGuardJson, { installed: status.installed, detail: status.detail });
      else console.log(`host guard: ${status.installed ? "installed" : "not installed"} (${status.detail})`);
      if (!o.remove && !status.installed) process.exitCode = 1;
    });
  sandbox
    .command("prune")
    .description("remove tmax containers and verifier snapshot images whose owning process is gone (e.g. after kill -9); others' running trials are kept")
    .option("--job <dir|id>", "every container of this job (its dir or its id)")
    .option("--all", "every tmax container on the engine, running trials of other processes and users included")
    .addOption(new Option("--backend <name>", "where to look").choices(["docker", "daytona"]).default("docker"))
    .option("--dry-run", "list what would be removed, remove nothing")
    .option("--json", "print one JSON document")
    .action(async (o: PruneOptions) => {
      process.exitCode = await pruneCommand(o);
    });
}

async function pruneCommand(o: PruneOptions): Promise<number> {
  if (o.job && o.all) throw new UsageError("--job and --all exclude each other");
  const { resolveJobRef } = await import("../jobs/identity.js");
  const filter = o.job ? { job: resolveJobRef(o.job) } : o.all ? { all: true } : {};
  const backend = createBackend(o.backend, {});
  const what = o.job ? `of job ${filter.job}` : o.all ? "(all)" : "whose owner process is gone";
  const selection = { backend: o.backend, selection: o.job ? "job" : o.all ? "all" : "owner-gone", job: filter.job ?? null } as const;
  const asJson = (c: PruneCandidate) => ({ kind: c.kind, id: c.id, name: c.name, job: c.job, job_dir: c.jobDir, owner: c.owner });
  if (o.dryRun) {
    if (!backend.listPrunable) throw new Error(`the ${o.backend} backend cannot list what it would prune`);
    const found = await backend.listPrunable(filter);
    if (o.json) emitJson(SandboxPruneJson, { ...selection, dry_run: true, candidates: found.map(asJson), removed: null });
    else {
      // names and labels were written by whoever made the container: never an escape sequence on the terminal
      for (const c of found) console.log(stripControl(`${c.kind}\t${c.id.slice(0, 12)}\t${c.name || "-"}\t${c.jobDir ?? c.job ?? "-"}\t${c.owner ?? "-"}`));
      console.log(`would remove ${found.filter((c) => c.kind !== "snapshot-image").length} sandbox(es) and ${found.filter((c) => c.kind === "snapshot-image").length} snapshot image(s) ${what}`);
    }
    return 0;
  }
  const { containers, images } = await pruneLeftovers(backend, filter);
  if (o.json) emitJson(SandboxPruneJson, { ...selection, dry_run: false, candidates: [], removed: { containers, images } });
  else console.log(`removed ${containers} sandbox(es) and ${images} snapshot image(s) ${what}`);
  return 0;
}
