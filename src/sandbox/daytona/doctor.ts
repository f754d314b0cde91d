// `tmax doctor --backend daytona`: is the key there, is the SDK installed, does the key authenticate, what does
// the account use, and can the image or snapshot a task needs be had. One finding per line, each with its fix.
//
// Quota: SDK 0.218.0 has no call for it (the organisation usage overview lives in @daytona/api-client and
// needs an organisation id, which an API key does not name), so doctor reports what the key's sandboxes use
// now (count, and vCPU / GiB of memory and disk of the started ones, from list()); a create over the quota
// fails with Daytona's own message.
import { activeSnapshot, snapshotName } from "./image.js";
import { MISSING_SDK_MESSAGE, SDK_INSTALL_FIX, isConnectionError, loadSdk as defaultLoadSdk, messageOf, statusOf, type DaytonaClientLike, type DaytonaSdkLike } from "./sdk.js";
import { TMAX_LABEL } from "../types.js";
import { withDeadline } from "../../util/deadline.js";

export interface DaytonaFinding {
  ok: boolean | "warn";
  what: string;
  fix?: string;
}

export interface DaytonaDoctorOptions {
  env?: NodeJS.ProcessEnv;
  loadSdk?: () => Promise<DaytonaSdkLike>;
  /** A snapshot name or an image reference to check. */
  image?: string;
  /** The task whose sandbox to check (its name for the snapshot template, its docker_image, whether it has a Dockerfile). */
  task?: { name: string; dockerImage?: string; hasDockerfile: boolean };
  /** Default $TMAX_DAYTONA_SNAPSHOT_TEMPLATE. */
  snapshotTemplate?: string;
  /** For the registry lookup of an image (tests inject one). */
  fetch?: typeof fetch;
  /** Bound on each API call (default 20 s). */
  timeoutMs?: number;
}

const LIST_LIMIT = 500;

export async function diagnoseDaytona(o: DaytonaDoctorOptions = {}): Promise<DaytonaFinding[]> {
  const env = o.env ?? process.env;
  const out: DaytonaFinding[] = [];
  const apiKey = env.DAYTONA_API_KEY || undefined;
  const apiUrl = env.DAYTONA_API_URL || undefined;
  const target = env.DAYTONA_TARGET || undefined;
  const where = `${apiUrl ?? "https://app.daytona.io/api (SDK default)"}, target ${target ?? "SDK default"}`;
  if (apiKey) out.push({ ok: true, what: `DAYTONA_API_KEY is set; API ${where}` });
  else out.push({ ok: false, what: "DAYTONA_API_KEY is not set", fix: "export DAYTONA_API_KEY=<key> (Daytona dashboard → API Keys); DAYTONA_API_URL / DAYTONA_TARGET optional" });

  let sdk: DaytonaSdkLike;
  try {
    sdk = await (o.loadSdk ?? defaultLoadSdk)();
    out.push({ ok: true, what: "Daytona SDK (@daytonaio/sdk) loads" });
  } catch (err) {
    const why = messageOf(err, { apiKey });
    out.push({ ok: false, what: why === MISSING_SDK_MESSAGE ? "the Daytona SDK (@daytonaio/sdk) is not installed" : why, fix: SDK_INSTALL_FIX });
    return out;
  }
  if (!apiKey) return out;

  const ms = o.timeoutMs ?? 20_000;
  let client: DaytonaClientLike;
  try {
    client = new sdk.Daytona({ apiKey, ...(apiUrl ? { apiUrl } : {}), ...(target ? { target } : {}) });
  } catch (err) {
    out.push({ ok: false, what: `cannot set up the Daytona client: ${messageOf(err, { apiKey })}`, fix: "check DAYTONA_API_URL / DAYTONA_TARGET" });
    return out;
  }

  // auth and usage: one list of the key's sandboxes
  try {
    const usage = { all: 0, started: 0, cpu: 0, memory: 0, disk: 0, tmax: 0 };
    await withDeadline(
      (async () => {
        for await (const sb of client.list()) {
          usage.all++;
          if (sb.labels?.[TMAX_LABEL] === "1") usage.tmax++;
          if (sb.state === "started") {
            usage.started++;
            usage.cpu += sb.cpu ?? 0;
            usage.memory += sb.memory ?? 0;
            usage.disk += sb.disk ?? 0;
          }
          if (usage.all >= LIST_LIMIT) break;
        }
      })(),
      ms,
      "listing sandboxes",
    );
    out.push({ ok: true, what: `the API key authenticates (sandboxes listed at ${where})` });
    const more = usage.all >= LIST_LIMIT ? " (first " + LIST_LIMIT + " counted)" : "";
    out.push({
      ok: true,
      what: `quota: the SDK exposes none; in use now: ${usage.all} sandbox${usage.all === 1 ? "" : "es"}${more}, ${usage.started} started (${usage.cpu} vCPU, ${usage.memory} GiB memory, ${usage.disk} GiB disk), ${usage.tmax} made by tmax`,
      ...(usage.tmax ? { fix: "tmax sandbox prune --backend daytona removes tmax's leftovers" } : {}),
    });
  } catch (err) {
    const status = statusOf(err);
    const fix =
      status === 401 || status === 403
        ? "check DAYTONA_API_KEY (create a key in the Daytona dashboard)"
        : isConnectionError(err) || /no answer within/.test((err as Error)?.message ?? "")
          ? "check network access and DAYTONA_API_URL / DAYTONA_TARGET"
          : undefined;
    out.push({ ok: false, what: `cannot list Daytona sandboxes at ${where}: ${messageOf(err, { apiKey })}`, fix });
    return out;
  }

  const template = o.snapshotTemplate ?? (env.TMAX_DAYTONA_SNAPSHOT_TEMPLATE || undefined);
  if (o.task) out.push(...(await checkTask(client, o.task, template, o)));
  if (o.image) out.push(...(await checkImageOrSnapshot(client, o.image, o)));
  return out;
}

async function checkTask(client: DaytonaClientLike, task: NonNullable<DaytonaDoctorOptions["task"]>, template: string | undefined, o: DaytonaDoctorOptions): Promise<DaytonaFinding[]> {
  if (template) {
    const name = snapshotName(template, task.name);
    const snap = await activeSnapshot(client, name);
    if (snap.active) return [{ ok: true, what: `task ${task.name}: snapshot '${name}' is active; its sandboxes start from it` }];
    if (snap.state) {
      return [
        { ok: false, what: `task ${task.name}: snapshot '${name}' is ${snap.state}${snap.reason ? ` (${snap.reason})` : ""}, so it is not used`, fix: "activate or rebuild it (Daytona dashboard → Snapshots), or unset the template" },
        ...(await fallback()),
      ];
    }
    return [{ ok: "warn", what: `task ${task.name}: no snapshot '${name}'`, fix: "create it from the task's image to start sandboxes faster" }, ...(await fallback())];
  }
  return fallback();

  async function fallback(): Promise<DaytonaFinding[]> {
    if (task.dockerImage) return checkImage(task.dockerImage, o, `task ${task.name}: prebuilt image`);
    if (task.hasDockerfile) return [{ ok: true, what: `task ${task.name}: Daytona builds its Dockerfile when a sandbox is created (not built by doctor)` }];
    return [{ ok: false, what: `task ${task.name}: neither a docker_image nor a Dockerfile`, fix: "add environment/Dockerfile or docker_image to task.toml" }];
  }
}

async function checkImageOrSnapshot(client: DaytonaClientLike, ref: string, o: DaytonaDoctorOptions): Promise<DaytonaFinding[]> {
  const snap = await activeSnapshot(client, ref);
  if (snap.active) return [{ ok: true, what: `snapshot '${ref}' is active` }];
  if (snap.state) return [{ ok: false, what: `snapshot '${ref}' is ${snap.state}${snap.reason ? ` (${snap.reason})` : ""}`, fix: "activate or rebuild it (Daytona dashboard → Snapshots)" }];
  return checkImage(ref, o, "image");
}

/** Whether the registry knows `ref` (an anonymous manifest HEAD; a private image can only be reported as such). */
async function checkImage(ref: string, o: DaytonaDoctorOptions, what: string): Promise<DaytonaFinding[]> {
  const found = await resolveImage(ref, o.fetch ?? fetch, o.timeoutMs ?? 20_000);
  if (found === "found") return [{ ok: true, what: `${what} '${ref}' exists in its registry (Daytona pulls it at create)` }];
  if (found === "missing") return [{ ok: false, what: `${what} '${ref}' is not in its registry`, fix: "check the name and tag, or push the image" }];
  if (found === "private") return [{ ok: "warn", what: `${what} '${ref}' needs registry credentials`, fix: "add the registry in the Daytona dashboard (Registries) so Daytona can pull it" }];
  return [{ ok: "warn", what: `${what} '${ref}': could not ask its registry (${found.error})` }];
}

/** Splits an image reference into registry host, repository and tag or digest (Docker Hub's defaults applied). */
export function parseImageRef(ref: string): { host: string; repo: string; reference: string } {
  let rest = ref;
  let reference = "latest";
  const at = rest.indexOf("@");
  if (at >= 0) {
    reference = rest.slice(at + 1);
    rest = rest.slice(0, at);
  } else {
    const colon = rest.lastIndexOf(":");
    if (colon > rest.lastIndexOf("/")) {
      reference = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
    }
  }
  const first = rest.split("/")[0];
  const hasHost = rest.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost");
  let host = hasHost ? first : "docker.io";
  let repo = hasHost ? rest.slice(first.length + 1) : rest;
  if (host === "docker.io" || host === "index.docker.io") {
    host = "registry-1.docker.io";
    if (!repo.includes("/")) repo = `library/${repo}`;
  }
  return { host, repo, reference };
}

const MANIFEST_TYPES = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

export async function resolveImage(ref: string, fetchImpl: typeof fetch, timeoutMs: number): Promise<"found" | "missing" | "private" | { error: string }> {
  const { host, repo, reference } = parseImageRef(ref);
  const url = `https://${host}/v2/${repo}/manifests/${reference}`;
  try {
    const head = (auth?: string) => fetchImpl(url, { method: "HEAD", headers: { Accept: MANIFEST_TYPES, ...(auth ? { Authorization: auth } : {}) }, signal: AbortSignal.timeout(timeoutMs) });
    let res = await head();
    if (res.status === 401) {
      // The registry names its token service; an anonymous token is enough for a public image.
      const challenge = res.headers.get("www-authenticate") ?? "";
      const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      if (!/^Bearer /i.test(challenge) || !params.realm) return "private";
      const tokenUrl = new URL(params.realm);
      if (params.service) tokenUrl.searchParams.set("service", params.service);
      tokenUrl.searchParams.set("scope", params.scope ?? `repository:${repo}:pull`);
      const tokenRes = await fetchImpl(tokenUrl, { signal: AbortSignal.timeout(timeoutMs) });
      if (!tokenRes.ok) return "private";
      const body = (await tokenRes.json()) as { token?: string; access_token?: string };
      const token = body.token ?? body.access_token;
      if (!token) return "private";
      res = await head(`Bearer ${token}`);
    }
    if (res.ok) return "found";
    if (res.status === 404) return "missing";
    // Docker Hub answers 401 for a repository that does not exist or is private: say the latter, it is the fixable one.
    if (res.status === 401 || res.status === 403) return "private";
    return { error: `HTTP ${res.status} from ${host}` };
  } catch (err) {
    return { error: (err as Error)?.message ?? String(err) };
  }
}
