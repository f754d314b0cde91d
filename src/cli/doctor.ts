// `tmax doctor`: is the model endpoint usable, is the sandbox engine there; one line per finding, with the fix.
import { existsSync } from "node:fs";
import path from "node:path";
import { createModelClient } from "../model/client.js";
import { probeModel, requireTokenSupport } from "../model/preflight.js";
import { probeGenerationDefaults } from "../model/samplingProbe.js";
import { createTokenClient } from "../model/tokens.js";
import { ModelError } from "../model/types.js";
import { createBackend } from "../sandbox/index.js";
import { discoverEngine, engineLine, type Discovery } from "../sandbox/docker/discover.js";
import { tunProblem } from "../sandbox/docker/rootless.js";
import { diagnoseDaytona, type DaytonaDoctorOptions } from "../sandbox/daytona/doctor.js";
import { loadTask } from "../tasks/load.js";
import { describeNodeRuntime, nodeRuntimeStatus } from "../util/nodeRuntime.js";
import { dim, green, red, yellow } from "./render.js";
import { modelConfig, tokenClientConfig, type ModelCliOptions } from "./options.js";

/** The --max-model-len each profile was run with: training 67584 (prompt ≤ 2048 + response ≤ 65536), eval 65536. */
export const EXPECTED_MAX_MODEL_LEN = { train: 67_584, eval: 65_536 } as const;

interface Finding {
  ok: boolean | "warn";
  what: string;
  fix?: string;
}

export interface DoctorSandboxOptions {
  /** Which backend to check (default docker). */
  backend?: "docker" | "daytona";
  /** daytona: a snapshot name or image reference to check. */
  image?: string;
  /** daytona: a task directory whose snapshot or image to check. */
  task?: string;
  /** daytona: snapshot name template (`{name}` = task name); default $TMAX_DAYTONA_SNAPSHOT_TEMPLATE. */
  snapshotTemplate?: string;
}

/** What tests replace: how the Daytona SDK is loaded, the registry client, the environment. */
export type DoctorDeps = Pick<DaytonaDoctorOptions, "loadSdk" | "fetch" | "env">;

export async function doctorCommand(o: ModelCliOptions & DoctorSandboxOptions & { skipModel?: boolean; skipSandbox?: boolean; json?: boolean }, deps: DoctorDeps = {}): Promise<number> {
  const findings: Finding[] = [describeNodeRuntime(nodeRuntimeStatus())];
  if (!o.skipModel) findings.push(...(await checkModel(o)));
  const engine: { discovery?: Discovery } = {};
  if (!o.skipSandbox) findings.push(...(o.backend === "daytona" ? await checkDaytona(o, deps) : await checkSandbox(engine)));
  const failed = findings.some((f) => f.ok === false);
  if (o.json) {
    const status = (f: Finding) => (f.ok === true ? "ok" : f.ok === "warn" ? "warn" : "fail");
    const out = {
      ok: !failed,
      findings: findings.map((f) => ({ status: status(f), what: f.what, ...(f.fix ? { fix: f.fix } : {}) })),
      ...(engine.discovery ? { engine: engine.discovery.engine ?? null, tried: engine.discovery.tried, ...(engine.discovery.fix ? { fix: engine.discovery.fix } : {}) } : {}),
    };
    console.log(JSON.stringify(out, null, 2));
    return failed ? 1 : 0;
  }
  for (const f of findings) {
    const mark = f.ok === true ? green("ok  ") : f.ok === "warn" ? yellow("warn") : red("FAIL");
    console.log(`${mark} ${f.what}${f.fix ? dim(` — fix: ${f.fix}`) : ""}`);
  }
  return failed ? 1 : 0;
}

async function checkModel(o: ModelCliOptions): Promise<Finding[]> {
  const out: Finding[] = [];
  const client = createModelClient(modelConfig(o, { maxRetries: 0, timeoutMs: 15_000, maxTokens: 256, logprobs: true, tokenIds: true }));
  let models: { id: string; maxModelLen?: number }[];
  try {
    models = await client.listModels();
  } catch (e) {
    return [{ ok: false, what: `model endpoint ${o.baseUrl}: ${(e as Error).message}`, fix: "start vLLM (vllm serve … --port 8008) or pass --base-url" }];
  }
  out.push({ ok: true, what: `model endpoint ${o.baseUrl} answers (${models.length} model${models.length === 1 ? "" : "s"})` });
  const served = models.find((m) => m.id === o.model);
  if (!served) {
    out.push({ ok: false, what: `model '${o.model}' is not served; served: ${models.map((m) => m.id).join(", ") || "none"}`, fix: "pass --model <one of them> or --served-model-name to vLLM" });
    return out;
  }
  const expected = EXPECTED_MAX_MODEL_LEN[o.profile];
  if (served.maxModelLen === undefined) out.push({ ok: "warn", what: `context length of '${o.model}' not reported`, fix: "vLLM reports max_model_len; other servers may not" });
  else if (served.maxModelLen !== expected) out.push({ ok: "warn", what: `max_model_len ${served.maxModelLen}, but the ${o.profile} profile was run with ${expected}`, fix: `serve with --max-model-len ${expected}` });
  else out.push({ ok: true, what: `max_model_len ${served.maxModelLen} (as the ${o.profile} profile expects)` });

  const tokens = createTokenClient(tokenClientConfig(client.config));
  if (o.profile === "train") {
    try {
      await requireTokenSupport(tokens);
      out.push({ ok: true, what: "/tokenize and /v1/completions with token ids and logprobs work (train is token-in/token-out)" });
    } catch (e) {
      out.push({ ok: false, what: `train needs vLLM's /tokenize and /v1/completions with token ids: ${(e as Error).message}`, fix: "use a recent vLLM" });
    }
  }
  try {
    const probe = await probeGenerationDefaults(tokens);
    if (probe.defaults === "vllm") out.push({ ok: true, what: `sampling defaults: ${probe.detail}` });
    else if (probe.defaults === "unknown") out.push({ ok: "warn", what: `sampling defaults not checked: ${probe.detail}` });
    else if (o.profile === "train") out.push({ ok: "warn", what: `sampling defaults: ${probe.detail}; tmax pins every field in train, other clients of this server are affected`, fix: "serve with --generation-config vllm (as training did)" });
    else out.push({ ok: "warn", what: `sampling defaults: ${probe.detail}; eval requests leave them to the server`, fix: "serve with --generation-config vllm to sample with vLLM's neutral defaults" });
  } catch (e) {
    out.push({ ok: "warn", what: `sampling defaults not checked: ${(e as Error).message}` });
  }

  try {
    const probe = await probeModel(client);
    if (!probe.toolCallSource) out.push({ ok: "warn", what: "test request gave no tool call (a small or non-Tmax model may not follow it)" });
    else if (probe.toolCallSource === "tool_calls") out.push({ ok: true, what: "tool calls come back parsed (tool_calls)" });
    else out.push({ ok: "warn", what: "tool calls come back as raw XML in content (tmax parses them)", fix: "serve with --enable-auto-tool-choice --tool-call-parser qwen3_xml" });
    if (probe.logprobs && probe.tokenIds) out.push({ ok: true, what: "chat completions return logprobs and token ids (--logprobs can record them)" });
    else out.push({ ok: "warn", what: `chat completions return no ${[probe.logprobs ? "" : "logprobs", probe.tokenIds ? "" : "token ids"].filter(Boolean).join(" or ")} (only --logprobs in eval uses them; rollouts sample token-in/token-out)`, fix: "use a recent vLLM (return_token_ids)" });
  } catch (e) {
    const msg = e instanceof ModelError ? e.message : (e as Error).message;
    out.push({ ok: false, what: `test completion failed: ${msg}` });
  }
  return out;
}

/** The engine discovery finds (DOCKER_HOST, docker context, Docker's and podman's sockets), its base images, the host guard. */
async function checkSandbox(into: { discovery?: Discovery }): Promise<Finding[]> {
  const discovery = (into.discovery = await discoverEngine());
  const found = discovery.engine;
  if (!found) {
    const tried = discovery.tried.map((t) => `${t.source} ${t.host.replace(/^unix:\/\//, "")}: ${t.error}`).join("; ");
    return [{ ok: false, what: `no container engine answers (tried ${tried})`, fix: discovery.fix }];
  }
  const out: Finding[] = [{ ok: true, what: `container engine: ${engineLine(found)}` }];
  // rootless podman on this host opens /dev/net/tun as this user for every network it makes
  const tun = found.kind === "podman" && found.rootless && found.host.startsWith("unix://") ? tunProblem() : undefined;
  if (tun) out.push({ ok: false, ...tun });
  const backend = createBackend("docker", { host: found.host });
  for (const image of ["localhost/tmax-base:bookworm", "localhost/tb-base:bookworm"]) {
    try {
      const sb = await backend.create({ image, network: "none", name: "doctor" });
      await sb.remove();
      out.push({ ok: true, what: `base image ${image} runs` });
    } catch (e) {
      out.push({ ok: false, what: `base image ${image}: ${(e as Error).message}`, fix: "tmax setup (builds the base images through this engine)" });
    }
  }
  out.push(await checkHostGuard(found.kind ?? "docker", found.rootless === true));
  return out;
}

/** Can a bridge container open connections to this host (a model server on 0.0.0.0, say)? */
async function checkHostGuard(kind: "docker" | "podman", rootless: boolean): Promise<Finding> {
  const { hostInterfaces, guardMode, hostGuardStatus } = await import("../sandbox/docker/hostGuard.js");
  if (guardMode() === "off") return { ok: "warn", what: "host guard switched off (TMAX_HOST_GUARD=0): tasks with internet can reach services on this host" };
  // rootless engines put their containers behind slirp4netns/pasta, not on a host bridge: there is no bridge to guard
  if (rootless) return { ok: "warn", what: `host guard: not applicable to rootless ${kind} (its containers reach this host through ${kind === "podman" ? "slirp4netns/pasta" : "RootlessKit"}, which the guard's bridge rules do not see); tasks with internet can reach services bound to 0.0.0.0 here`, fix: "bind model servers to 127.0.0.1, or use a rootful engine with `sudo tmax sandbox guard`" };
  const status = await hostInterfaces(process.env, kind).then((ifaces) => hostGuardStatus(ifaces)).catch((e: Error) => ({ installed: false, detail: e.message }));
  if (status.installed) return { ok: true, what: `host guard: ${status.detail}` };
  if (/^cannot read the firewall/.test(status.detail)) return { ok: "warn", what: `host guard: unknown to this user (${status.detail}); without it tasks with internet can reach services on this host`, fix: "`sudo tmax sandbox guard` once per boot (installs it, or says it is there)" };
  return { ok: "warn", what: `host guard not installed (${status.detail}): tasks with internet can reach services on this host; tmax installs it before the first bridge sandbox when it runs as root`, fix: "tmax sandbox guard (as root)" };
}

/** The Daytona backend's findings: key, SDK, authentication, usage, and the image or snapshot of --task / --image. */
export async function checkDaytona(o: DoctorSandboxOptions, deps: DoctorDeps = {}): Promise<Finding[]> {
  let task: DaytonaDoctorOptions["task"];
  if (o.task) {
    try {
      const t = await loadTask(o.task);
      task = { name: t.name, dockerImage: t.config.dockerImage, hasDockerfile: existsSync(path.join(t.environment.contextDir, t.environment.dockerfile)) };
    } catch (e) {
      return [{ ok: false, what: `task ${o.task}: ${(e as Error).message.split("\n")[0]}`, fix: "pass a task directory (task.toml or task.yaml)" }];
    }
  }
  const findings = await diagnoseDaytona({ ...deps, image: o.image, task, snapshotTemplate: o.snapshotTemplate });
  return findings.map((f) => ({ ...f, what: `daytona: ${f.what}` }));
}
