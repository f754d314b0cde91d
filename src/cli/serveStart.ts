// `tmax serve` once its options are parsed (loaded only when the command runs): dataset, engine and model checks,
// the job dir, the server, and a shutdown that removes every session's sandbox on SIGINT/SIGTERM.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { resolveDatasetArg } from "./datasets.js";
import { modelConfig, tokenClientConfig, trialSettings, type AgentCliOptions, type ModelCliOptions, type SandboxCliOptions } from "./options.js";
import { preflightEngine } from "./preflight.js";
import { bold, dim, errColor } from "./render.js";
import { ensureJobId } from "../jobs/identity.js";
import { requireTokenSupport } from "../model/preflight.js";
import { createTokenClient } from "../model/tokens.js";
import { createBackend, removeAllTracked } from "../sandbox/index.js";
import { loadDataset } from "../tasks/load.js";
import { stripControl } from "../util/terminal.js";
import { checkTokenPolicy } from "../serve/auth.js";
import type { ServeEnv } from "../serve/env.js";
import { startServer } from "../serve/server.js";

export interface ServeCliOptions extends ModelCliOptions, AgentCliOptions, SandboxCliOptions {
  dataset: string;
  registry?: string;
  host: string;
  port: number;
  token?: string;
  maxSessions: number;
  idleTimeout: number;
  actionSet: "tb2" | "harness";
  jobDir?: string;
  timeoutMultiplier: number;
  agentTimeoutMultiplier?: number;
  verifierTimeoutMultiplier?: number;
  buildTimeoutMultiplier?: number;
  agentTimeout?: "task" | "none";
  cpus?: number;
  memoryMb?: number;
}

export async function serve(o: ServeCliOptions): Promise<number> {
  const token = o.token ?? process.env.TMAX_SERVE_TOKEN;
  checkTokenPolicy(o.host, token); // before anything is fetched or started
  if (o.backend === "local" && !o.unsafe) throw new Error("the local backend runs commands directly on this machine without isolation; pass --unsafe to allow it");
  const settings = {
    ...trialSettings(o),
    ...(o.agentTimeout ? { agentTimeout: o.agentTimeout } : {}),
    ...(o.cpus !== undefined || o.memoryMb !== undefined ? { resources: { cpus: o.cpus, memoryMb: o.memoryMb } } : {}),
    agentTimeoutMultiplier: o.agentTimeoutMultiplier,
    verifierTimeoutMultiplier: o.verifierTimeoutMultiplier,
    buildTimeoutMultiplier: o.buildTimeoutMultiplier,
  };
  const resolved = await resolveDatasetArg(o.dataset, o.registry);
  const dataset = await loadDataset(resolved.dir);
  for (const b of dataset.broken) console.error(errColor.yellow(stripControl(`skipped ${b.name}: ${b.problems[0]?.message ?? "broken task"}`)));
  if (dataset.tasks.length === 0) throw new Error(`no loadable tasks in ${resolved.dir}`);
  await preflightEngine(o.backend, o.unsafe);
  const config = modelConfig(o);
  const tokens = createTokenClient(tokenClientConfig(config));
  // a server whose sessions default to train-harness needs the model's /tokenize now, not at the first reset
  if (o.actionSet === "harness" && o.profile === "train") await requireTokenSupport(tokens);

  const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
  const jobDir = path.resolve(o.jobDir ?? path.join("jobs", `serve-${stamp}`));
  await mkdir(jobDir, { recursive: true });
  const env: ServeEnv = {
    datasetDir: resolved.dir,
    tasks: new Map(dataset.tasks.map((t) => [t.name, t])),
    backend: createBackend(o.backend, { unsafe: o.unsafe }),
    settings,
    jobDir,
    jobId: await ensureJobId(jobDir),
    actionSet: o.actionSet,
    profile: o.profile,
    tokens,
    modelName: o.model,
    ...(resolved.source ? { dataset: { name: resolved.source.name, version: resolved.source.version, commit: resolved.source.commit } } : {}),
  };
  const server = await startServer({ env, host: o.host, port: o.port, token, maxSessions: o.maxSessions, idleTimeoutSec: o.idleTimeout });
  console.log(`${bold("tmax serve")} ${server.url} ${dim(`· ${dataset.tasks.length} tasks · ${o.maxSessions} sessions · actions ${o.actionSet} · profile ${o.profile} · ${o.backend} · job ${jobDir}`)}`);
  console.log(dim(`OpenEnv clients: base_url ${token ? server.url.replace("://", "://tmax:<token>@") : server.url} (WebSocket ${server.url.replace(/^http/, "ws")}/ws)`));

  // SIGINT/SIGTERM: close every session (its sandbox removed), then exit; a second signal exits at once
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) process.exit(signal === "SIGINT" ? 130 : 143);
      stopping = true;
      const n = server.pool.active;
      console.error(`tmax serve: ${signal}, closing ${n} session(s) and removing their sandboxes (again to skip)`);
      const deadline = new Promise((r) => setTimeout(r, 60_000).unref());
      void Promise.race([server.close(), deadline])
        .then(() => removeAllTracked(10_000))
        .then(({ pending }) => {
          if (pending > 0) console.error(`tmax serve: ${pending} sandbox(es) may be left; run \`tmax sandbox prune\``);
          process.exitCode = signal === "SIGINT" ? 130 : 143;
          resolve();
        });
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  return process.exitCode as number;
}
