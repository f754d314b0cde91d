// Multi-container sandboxes on the docker backend: the services of a task's compose file on one private network
// (internal when the task has no internet), each reachable by its service name; started dependencies first, each
// healthcheck awaited before the next service starts (compose `up --wait`). The sandbox handed back is the main
// service; removing it removes every container and the network. All carry tmax's labels, so prune finds them.
import { ownerLabels } from "../owner.js";
import { randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import type Docker from "dockerode";
import { track, untrack } from "../cleanup.js";
import { engineError, statusCode } from "./engine.js";
import { ensureHostGuard } from "./hostGuard.js";
import { resolveImage } from "./images.js";
import { SandboxError, TMAX_JOB_LABEL, TMAX_LABEL, TMAX_NETWORK_LABEL, type ComposeServiceSpec, type CreateOptions, type Sandbox, type SandboxSpec } from "../types.js";

/** How long services may take to become healthy or complete when the spec names no build timeout. */
const DEFAULT_SERVICE_WAIT_SEC = 600;

/**
 * `createMain` makes the main service's container (docker.ts passes its createSandbox in, so this file does not
 * import docker.ts, which imports this one).
 */
export async function createComposeSandbox<S extends Sandbox>(
  docker: Docker,
  spec: SandboxSpec,
  opts: CreateOptions,
  createMain: (spec: SandboxSpec, opts: CreateOptions) => Promise<S>,
): Promise<S> {
  const compose = spec.compose!;
  const signal = opts.signal;
  signal?.throwIfAborted();
  const suffix = randomBytes(4).toString("hex");
  const base = `tmax-${slug(spec.name ?? "compose")}-${suffix}`;
  const labels = { ...spec.labels, ...ownerLabels(), [TMAX_LABEL]: "1" };
  const netName = `${base}-net`;
  // even an internal network reaches the host through its gateway (10.89.x.1): guard the host first
  await ensureHostGuard(docker);
  try {
    await docker.createNetwork({ Name: netName, Driver: "bridge", Internal: spec.network !== "bridge", Labels: { ...labels, [TMAX_NETWORK_LABEL]: "1" } });
  } catch (err) {
    throw engineError(docker, err, "create_failed", `cannot create network ${netName}`);
  }

  const sidecars: Docker.Container[] = [];
  let main: S | undefined;
  let removing: Promise<void> | undefined;
  const group = {
    id: netName,
    remove(): Promise<void> {
      removing ??= (async () => {
        await main?.remove().catch(() => undefined);
        await Promise.all(sidecars.map((c) => c.remove({ force: true, v: true }).catch((err) => (statusCode(err) === 404 ? undefined : undefined))));
        await removeNetwork(docker, netName);
        untrack(group);
      })();
      return removing;
    },
  };
  track(group);
  // each wait for a service (healthy, completed) ends after the build timeout: a task's healthcheck (retries: .nan
  // or 1e9, start_period: 1000h) or a sidecar that never exits would otherwise hold the trial forever (measured)
  const waitSec = spec.build?.timeoutSec ?? DEFAULT_SERVICE_WAIT_SEC;

  try {
    for (const svc of compose.services) {
      signal?.throwIfAborted();
      for (const dep of svc.dependsOn.filter((d) => d.condition === "service_completed_successfully")) {
        const c = sidecars.find((x) => (x as Docker.Container & { service?: string }).service === dep.service);
        if (c) await waitCompleted(docker, c, dep.service, svc.name, waitSec);
      }
      if (svc.name === compose.main) {
        main = await createMain(
          {
            ...spec,
            compose: undefined,
            env: { ...svc.env, ...spec.env },
            ...(svc.workdir && !spec.workdir ? { workdir: svc.workdir } : {}),
            ...(svc.build ? { build: { ...spec.build, contextDir: svc.build.contextDir, dockerfile: svc.build.dockerfile } } : {}),
            ...(svc.image ? { prebuilt: svc.image, image: svc.image } : {}),
            networkAttach: { name: netName, aliases: [svc.name], hosts: await hostEntries(sidecars, netName) },
          },
          opts,
        );
        if (svc.healthcheck) await waitHealthy((argv, t) => main!.exec(argv, { timeoutSec: t }).then((r) => r.exitCode), svc, signal, waitSec);
        continue;
      }
      const container = await startService(docker, svc, spec, `${base}-${slug(svc.name)}`, labels, netName, opts, await hostEntries(sidecars, netName));
      (container as Docker.Container & { service?: string }).service = svc.name;
      sidecars.push(container);
      if (svc.healthcheck) await waitHealthy((argv, t) => execExitCode(docker, container, argv, t), svc, signal, waitSec);
    }
  } catch (err) {
    await group.remove();
    throw err;
  }
  const sandbox: S = { ...main!, remove: () => group.remove() };
  return sandbox;
}

/** `name:ip` of the services started so far: names resolve even where the engine runs no DNS on its networks. */
async function hostEntries(started: Docker.Container[], netName: string): Promise<string[]> {
  const out: string[] = [];
  for (const c of started) {
    const info = await c.inspect().catch(() => null);
    const ip = info?.NetworkSettings?.Networks?.[netName]?.IPAddress;
    const service = (c as Docker.Container & { service?: string }).service;
    if (ip && service) out.push(`${service}:${ip}`);
  }
  return out;
}

async function startService(docker: Docker, svc: ComposeServiceSpec, spec: SandboxSpec, name: string, labels: Record<string, string>, netName: string, opts: CreateOptions, hosts: string[]): Promise<Docker.Container> {
  const used = await resolveImage(
    docker,
    {
      ...(svc.image ? { prebuilt: svc.image } : {}),
      ...(svc.build ? { build: { contextDir: svc.build.contextDir, dockerfile: svc.build.dockerfile, imageMap: spec.build?.imageMap, timeoutSec: spec.build?.timeoutSec } } : {}),
      pull: spec.pull,
    },
    { signal: opts.signal, onPull: opts.onPull, onNote: opts.onNote },
  );
  // a service without its own mem_limit gets the task's memory: none at all let one service take the host's
  const mb = svc.memoryMb ?? spec.memoryMb;
  const memory = mb ? Math.round(mb * 1024 * 1024) : undefined;
  let container: Docker.Container;
  try {
    container = await docker.createContainer({
      name,
      Image: used.name,
      ...(svc.command ? { Cmd: svc.command } : {}),
      ...(svc.entrypoint ? { Entrypoint: svc.entrypoint } : {}),
      Env: Object.entries(svc.env).map(([k, v]) => `${k}=${v}`),
      ...(svc.workdir ? { WorkingDir: svc.workdir } : {}),
      ...(svc.user ? { User: svc.user } : {}),
      Labels: { ...labels, "io.tmax.service": svc.name },
      NetworkingConfig: { EndpointsConfig: { [netName]: { Aliases: [svc.name] } } },
      HostConfig: {
        NetworkMode: netName,
        ...(hosts.length ? { ExtraHosts: hosts } : {}),
        NanoCpus: svc.cpus ? Math.round(svc.cpus * 1e9) : undefined,
        Memory: memory,
        MemorySwap: memory,
        PidsLimit: spec.pidsLimit ?? 4096,
      },
    } as Docker.ContainerCreateOptions);
  } catch (err) {
    throw engineError(docker, err, "create_failed", `cannot create service '${svc.name}' from '${used.name}'`);
  }
  try {
    await container.start();
  } catch (err) {
    await container.remove({ force: true }).catch(() => undefined);
    throw engineError(docker, err, "create_failed", `cannot start service '${svc.name}'`);
  }
  return container;
}

/** Compose healthcheck semantics: failures in the start period do not count; `retries` failures in a row fail. */
async function waitHealthy(run: (argv: string[], timeoutSec: number) => Promise<number>, svc: ComposeServiceSpec, signal: AbortSignal | undefined, waitSec: number): Promise<void> {
  const h = svc.healthcheck!;
  const started = Date.now();
  const deadline = started + waitSec * 1000;
  const retries = Number.isFinite(h.retries) ? Math.max(1, h.retries) : 3;
  let failures = 0;
  for (;;) {
    signal?.throwIfAborted();
    const left = Math.ceil((deadline - Date.now()) / 1000);
    const timeoutSec = Math.max(1, Math.min(Number.isFinite(h.timeoutSec) ? Math.ceil(h.timeoutSec) : 30, left));
    const code = await run(h.test, timeoutSec).catch(() => -1);
    if (code === 0) return;
    const inStart = (Date.now() - started) / 1000 < h.startPeriodSec;
    if (!inStart && ++failures >= retries) {
      throw new SandboxError(`service '${svc.name}' did not become healthy (healthcheck failed ${failures} time(s): ${h.test.join(" ")})`, "create_failed");
    }
    if (Date.now() >= deadline) throw new SandboxError(`service '${svc.name}' did not become healthy within ${waitSec}s (the build timeout; healthcheck: ${h.test.join(" ")})`, "create_failed");
    const pause = Number.isFinite(h.intervalSec) ? Math.max(100, Math.min(h.intervalSec, 5) * 1000) : 5000;
    await new Promise((r) => setTimeout(r, Math.min(pause, Math.max(0, deadline - Date.now()))));
  }
}

async function waitCompleted(docker: Docker, c: Docker.Container, service: string, dependent: string, waitSec: number): Promise<void> {
  const deadline = Date.now() + waitSec * 1000;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SandboxError(`service '${service}' did not complete within ${waitSec}s (the build timeout; required by '${dependent}')`, "create_failed")), Math.max(0, deadline - Date.now()));
  });
  const waited = c.wait().catch((err) => {
    throw engineError(docker, err, "create_failed", `cannot wait for service '${service}'`);
  });
  const out = (await Promise.race([waited, late]).finally(() => clearTimeout(timer))) as { StatusCode?: number };
  if (out.StatusCode !== 0) throw new SandboxError(`service '${service}' exited with ${out.StatusCode} (required to complete successfully by '${dependent}')`, "create_failed");
}

async function execExitCode(docker: Docker, container: Docker.Container, argv: string[], timeoutSec: number): Promise<number> {
  const exec = await container.exec({ Cmd: ["timeout", String(timeoutSec), ...argv], AttachStdout: true, AttachStderr: true });
  const stream = (await exec.start({})) as unknown as Readable;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      stream.destroy();
      resolve();
    }, (timeoutSec + 5) * 1000);
    stream.on("data", () => undefined);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    stream.once("end", done);
    stream.once("close", done);
    stream.once("error", done);
  });
  for (let i = 0; i < 50; i++) {
    const info = await exec.inspect();
    if (!info.Running && info.ExitCode !== null && info.ExitCode !== undefined) return info.ExitCode;
    await new Promise((r) => setTimeout(r, 20));
  }
  return -1;
}

async function removeNetwork(docker: Docker, name: string): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await docker.getNetwork(name).remove();
      return;
    } catch (err) {
      if (statusCode(err) === 404) return;
      await new Promise((r) => setTimeout(r, 200 * (attempt + 1))); // endpoints still detaching
    }
  }
}

/** Removes tmax's private networks (of one job, or all); containers must be gone first. */
export async function pruneNetworks(docker: Docker, job?: string): Promise<number> {
  let list: Docker.NetworkInspectInfo[];
  try {
    list = await docker.listNetworks({ filters: { label: [`${TMAX_NETWORK_LABEL}=1`, ...(job ? [`${TMAX_JOB_LABEL}=${job}`] : [])] } });
  } catch {
    return 0;
  }
  let n = 0;
  for (const net of list) {
    await removeNetwork(docker, net.Name);
    n++;
  }
  return n;
}

function slug(name: string): string {
  return name.replace(/[^a-zA-Z0-9_.-]+/g, "-").replace(/^[-.]+|-+$/g, "").slice(0, 30) || "svc";
}
