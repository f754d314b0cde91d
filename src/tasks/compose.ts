// docker-compose files of multi-container tasks (Harbor's environment/docker-compose.yaml, TB 1.x's root
// docker-compose.yaml with several services), read into a plain spec the sandbox layer can run. Only what a task
// environment needs is supported; any other feature is named in one error instead of being silently dropped.
import path from "node:path";
import { parse as parseYaml, YAMLParseError } from "yaml";
import { isWithin } from "../util/fs.js";
import { describeValue, IMAGE_REF, isDir, isFile } from "./files.js";
import type { ComposeService, ComposeSpec, DependsCondition } from "./types.js";

export type { ComposeHealthcheck, ComposeService, ComposeSpec, DependsCondition } from "./types.js";

export interface ComposeReadContext {
  taskDir: string;
  /** Directory relative build contexts resolve against (Harbor: environment/; TB1: the task dir). */
  baseDir: string;
  file: string;
  main: string;
  /** Add an empty main service when the file has none (Harbor). */
  implicitMain?: boolean;
  /** Values for ${VAR} in the file (Harbor's CONTEXT_DIR…, TB1's T_BENCH_*). Unknown vars use their default or "". */
  vars: Record<string, string>;
}

/** Keys of a service that tmax honours or may ignore safely; anything else is refused. */
const SERVICE_KEYS = new Set([
  "image", "build", "command", "entrypoint", "environment", "depends_on", "healthcheck", "working_dir", "user",
  "expose", "container_name", "restart", "pull_policy", "deploy", "extra_hosts", "init", "tty", "stdin_open",
  "volumes", "networks", "hostname", "labels", "mem_limit", "cpus", "platform",
]);
const TOP_KEYS = new Set(["services", "version", "name", "networks", "volumes"]);

/** Reads a compose file; returns the spec, or the list of problems (one line each) when it cannot be run. */
export async function readComposeFile(text: string, ctx: ComposeReadContext): Promise<{ spec?: ComposeSpec; errors: string[] }> {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    const at = err instanceof YAMLParseError ? err.linePos?.[0] : undefined;
    return { errors: [`invalid YAML${at ? ` at line ${at.line}, column ${at.col}` : ""}`] };
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) return { errors: ["expected a mapping with `services`"] };
  const top = doc as Record<string, unknown>;
  const unsupported: string[] = [];
  for (const key of Object.keys(top)) if (!TOP_KEYS.has(key) && !key.startsWith("x-")) unsupported.push(key);
  if (top.networks && Object.keys(top.networks as object).some((n) => n !== "default")) unsupported.push("networks (user-defined)");
  if (top.volumes && Object.keys(top.volumes as object).length > 0) unsupported.push("volumes (named)");

  const services = top.services;
  if (!services || typeof services !== "object" || Array.isArray(services) || Object.keys(services).length === 0) {
    return { errors: ["no services defined"] };
  }
  const errors: string[] = [];
  const out: ComposeService[] = [];
  const all = { ...(ctx.implicitMain ? { [ctx.main]: {} } : {}), ...(services as Record<string, unknown>) };
  for (const [name, raw] of Object.entries(all)) {
    const svc = raw === null ? {} : raw;
    if (typeof svc !== "object" || Array.isArray(svc)) {
      errors.push(`services.${name}: expected a mapping`);
      continue;
    }
    const s = svc as Record<string, unknown>;
    for (const key of Object.keys(s)) if (!SERVICE_KEYS.has(key) && !key.startsWith("x-")) unsupported.push(`services.${name}.${key}`);
    const parsed = await readService(name, s, ctx, errors, unsupported);
    if (parsed) out.push(parsed);
  }
  if (unsupported.length) errors.unshift(`unsupported compose feature(s): ${unsupported.join(", ")}`);
  if (!out.some((s) => s.name === ctx.main)) errors.push(`no \`${ctx.main}\` service: the agent and verifier run in it`);
  for (const s of out) {
    for (const d of s.dependsOn) if (!out.some((o) => o.name === d.service)) errors.push(`services.${s.name}.depends_on: unknown service '${d.service}'`);
    if (s.name !== ctx.main && !s.build && !s.image) errors.push(`services.${s.name}: needs an image or a build section`);
  }
  if (errors.length) return { errors };
  const ordered = startOrder(out);
  if (typeof ordered === "string") return { errors: [ordered] };
  return { spec: { file: ctx.file, main: ctx.main, services: ordered }, errors: [] };
}

async function readService(name: string, s: Record<string, unknown>, ctx: ComposeReadContext, errors: string[], unsupported: string[]): Promise<ComposeService | undefined> {
  const field = `services.${name}`;
  const sub = (v: unknown) => (typeof v === "string" ? substitute(v, ctx.vars) : v);
  const svc: ComposeService = { name, env: {}, dependsOn: [] };

  if (s.build !== undefined) {
    let context = ".";
    let dockerfile = "Dockerfile";
    if (typeof s.build === "string") context = sub(s.build) as string;
    else if (s.build && typeof s.build === "object") {
      const b = s.build as Record<string, unknown>;
      for (const key of Object.keys(b)) if (!["context", "dockerfile"].includes(key)) unsupported.push(`${field}.build.${key}`);
      if (typeof b.context === "string") context = sub(b.context) as string;
      if (typeof b.dockerfile === "string") dockerfile = sub(b.dockerfile) as string;
    }
    const contextDir = path.resolve(ctx.baseDir, context || ".");
    if (!isWithin(ctx.taskDir, contextDir)) errors.push(`${field}.build: context ${describeValue(context)} is outside the task directory`);
    else if (!(await isDir(contextDir))) errors.push(`${field}.build: context ${describeValue(context)} does not exist`);
    else if (!isWithin(ctx.taskDir, path.resolve(contextDir, dockerfile))) errors.push(`${field}.build: dockerfile ${describeValue(dockerfile)} is outside the task directory`);
    else if (!(await isFile(path.resolve(contextDir, dockerfile)))) errors.push(`${field}.build: ${dockerfile} not found in ${describeValue(context)}`);
    else svc.build = { contextDir, dockerfile };
  }
  if (typeof s.image === "string") {
    const image = substitute(s.image, ctx.vars);
    if (image && !IMAGE_REF.test(image)) errors.push(`${field}.image: ${describeValue(image)} must be an image reference (letters, digits and . _ - / : @)`);
    // With a build section the image is only the tag compose gives the result (TB1 and Harbor fill it from vars).
    if (image && !svc.build && s.build === undefined) svc.image = image;
  }
  const argv = (v: unknown, key: string): string[] | undefined => {
    if (v === undefined || v === null) return undefined;
    if (typeof v === "string") return ["/bin/sh", "-c", substitute(v, ctx.vars)];
    if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v.map((x) => substitute(x, ctx.vars));
    errors.push(`${field}.${key}: expected a string or a list of strings, got ${describeValue(v)}`);
    return undefined;
  };
  svc.command = argv(s.command, "command");
  svc.entrypoint = argv(s.entrypoint, "entrypoint");
  svc.env = composeEnvironment(s.environment, ctx.vars);
  if (typeof s.working_dir === "string") svc.workdir = substitute(s.working_dir, ctx.vars);
  if (typeof s.user === "string" || typeof s.user === "number") svc.user = String(s.user);

  const deps = s.depends_on;
  if (Array.isArray(deps)) svc.dependsOn = deps.filter((d): d is string => typeof d === "string").map((service) => ({ service, condition: "service_started" as const }));
  else if (deps && typeof deps === "object") {
    for (const [service, spec] of Object.entries(deps as Record<string, unknown>)) {
      const condition = ((spec as { condition?: unknown } | null)?.condition ?? "service_started") as string;
      if (!["service_started", "service_healthy", "service_completed_successfully"].includes(condition)) errors.push(`${field}.depends_on.${service}: unknown condition ${describeValue(condition)}`);
      else svc.dependsOn.push({ service, condition: condition as DependsCondition });
    }
  }

  if (s.healthcheck !== undefined) {
    const h = (s.healthcheck ?? {}) as Record<string, unknown>;
    const test = h.test;
    let cmd: string[] | undefined;
    if (typeof test === "string") cmd = ["/bin/sh", "-c", test];
    else if (Array.isArray(test) && test[0] === "CMD-SHELL") cmd = ["/bin/sh", "-c", test.slice(1).join(" ")];
    else if (Array.isArray(test) && test[0] === "CMD") cmd = test.slice(1).map(String);
    else if (Array.isArray(test) && test[0] === "NONE") cmd = undefined;
    else if (h.disable !== true) errors.push(`${field}.healthcheck.test: expected a string or ["CMD", ...] / ["CMD-SHELL", "..."], got ${describeValue(test)}`);
    if (cmd && h.disable !== true) {
      svc.healthcheck = {
        test: cmd,
        intervalSec: durationSec(h.interval, 30),
        timeoutSec: durationSec(h.timeout, 30),
        retries: typeof h.retries === "number" ? h.retries : 3,
        startPeriodSec: durationSec(h.start_period, 0),
      };
    }
  }

  // Volumes: only the harness log mounts TB1 and Harbor put in their compose files (filled by the harness itself).
  if (Array.isArray(s.volumes)) {
    for (const v of s.volumes) {
      const text = typeof v === "string" ? v : JSON.stringify(v);
      if (!/\$\{?(T_BENCH_|HOST_|ENV_)/.test(text)) unsupported.push(`${field}.volumes`);
    }
  } else if (s.volumes !== undefined) unsupported.push(`${field}.volumes`);
  if (s.networks !== undefined) {
    const names = Array.isArray(s.networks) ? s.networks : Object.keys(s.networks as object);
    if (names.some((n) => n !== "default")) unsupported.push(`${field}.networks`);
  }
  const limits = (s.deploy as { resources?: { limits?: { cpus?: unknown; memory?: unknown } } } | undefined)?.resources?.limits;
  const cpus = limits?.cpus ?? s.cpus;
  if (cpus !== undefined && Number.isFinite(Number(substitute(String(cpus), ctx.vars))) && substitute(String(cpus), ctx.vars) !== "") svc.cpus = Number(substitute(String(cpus), ctx.vars));
  const mem = limits?.memory ?? s.mem_limit;
  if (mem !== undefined) {
    const mb = sizeMb(substitute(String(mem), ctx.vars));
    if (mb) svc.memoryMb = mb;
  }
  return svc;
}

/** Dependencies first; a cycle is an error. Order among independent services follows the file. */
function startOrder(services: ComposeService[]): ComposeService[] | string {
  const byName = new Map(services.map((s) => [s.name, s]));
  const out: ComposeService[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (s: ComposeService, chain: string[]): string | undefined => {
    if (state.get(s.name) === "done") return undefined;
    if (state.get(s.name) === "visiting") return `depends_on cycle: ${[...chain, s.name].join(" → ")}`;
    state.set(s.name, "visiting");
    for (const d of s.dependsOn) {
      const err = visit(byName.get(d.service)!, [...chain, s.name]);
      if (err) return err;
    }
    state.set(s.name, "done");
    out.push(s);
    return undefined;
  };
  for (const s of services) {
    const err = visit(s, []);
    if (err) return err;
  }
  return out;
}

/** ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR from `vars`; unknown ones become their default or "". */
export function substitute(text: string, vars: Record<string, string>): string {
  return text
    .replace(/\$\$/g, "\u0000")
    .replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}/g, (_m, name: string, def?: string) => vars[name] ?? def ?? "")
    .replace(/\$([A-Za-z_][A-Za-z0-9_]*)/g, (_m, name: string) => vars[name] ?? "")
    .replace(/\u0000/g, "$");
}

function composeEnvironment(value: unknown, vars: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  if (Array.isArray(value)) {
    for (const item of value) {
      if (typeof item !== "string") continue;
      const eq = item.indexOf("=");
      if (eq > 0) out[item.slice(0, eq)] = substitute(item.slice(eq + 1), vars);
    }
  } else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) if (v !== null && v !== undefined) out[k] = substitute(String(v), vars);
  }
  return out;
}

/** Compose durations: "30s", "1m30s", "500ms", "1h", or a number of seconds. */
export function durationSec(v: unknown, fallback: number): number {
  if (typeof v === "number") return v;
  if (typeof v !== "string" || !v.trim()) return fallback;
  let total = 0;
  let matched = false;
  for (const m of v.matchAll(/(\d+(?:\.\d+)?)(ms|us|s|m|h)/g)) {
    matched = true;
    const n = Number(m[1]);
    total += m[2] === "ms" ? n / 1000 : m[2] === "us" ? n / 1e6 : m[2] === "m" ? n * 60 : m[2] === "h" ? n * 3600 : n;
  }
  return matched ? total : fallback;
}

function sizeMb(v: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt])?i?b?\s*$/i.exec(v);
  if (!m) return undefined;
  const f = { k: 1 / 1024, m: 1, g: 1024, t: 1024 * 1024 }[(m[2] ?? "b").toLowerCase() as "k"] ?? 1 / (1024 * 1024);
  return Math.max(1, Math.floor(Number(m[1]) * f));
}
