// Builds task images from a Dockerfile context through the engine's /build API, offline: base images must
// exist locally (or be mapped onto local ones with an image map), and each image is tagged by a hash of
// everything that went into it so that a second build of the same task is a no-op.
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import type Docker from "dockerode";
import { parse as parseToml } from "smol-toml";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { engineError, oneLine, statusCode } from "./engine.js";
import { podmanCliBuild, podmanLimitsMemory, usePodmanCli, type BuildNetwork } from "./buildNetwork.js";
import { ensureHostGuard } from "./hostGuard.js";
import { linkLeadsOut } from "../../util/fs.js";
import { argWords, bothReadings, parseDockerfile, shellWord } from "../dockerfile.js";
import { contextEntries } from "./dockerignore.js";
import { packItems, type LocalEntry, type PackItem } from "../bytes/tarball.js";
import { SandboxError } from "../types.js";
import { withRootlessHint } from "./rootless.js";

export interface BuildSpec {
  contextDir: string;
  /** Path of the Dockerfile, relative to contextDir (default `Dockerfile`) or absolute. */
  dockerfile?: string;
  /** Base image substitutions applied to FROM lines, e.g. `{ "python:3.11-slim": "localhost/tb-base:bookworm" }`. */
  imageMap?: Record<string, string>;
  timeoutSec?: number;
  /** Network of the RUN steps: "none" (default) unless the task allows internet; never the host's. */
  network?: "none" | "bridge";
}

export interface BuildOptions {
  signal?: AbortSignal;
  /** Receives build output line by line as it arrives. */
  onLog?: (line: string) => void;
}

export const TASK_IMAGE_REPO = "localhost/tmax-task";
/** Label on images tmax built, for a later `prune --images`. */
export const TMAX_IMAGE_LABEL = "io.tmax.image";
const DEFAULT_BUILD_TIMEOUT_SEC = 1800;

// ---------------------------------------------------------------------------------------------------------
// FROM rewriting

const FROM_LINE = /^(\s*FROM\s+)((?:--\S+\s+)*)(\S+)(.*)$/i;

interface FromLine {
  line: number; // 1-based
  image: string;
  /** True for `FROM <earlier stage>` and for images built from ARGs: nothing to map or look up. */
  internal: boolean;
}

/** The FROM instructions as Docker reads them (see dockerfile.ts), with stage references and ARG-built names marked. */
function scanFromLines(text: string): FromLine[] {
  const stages = new Set<string>();
  const out: FromLine[] = [];
  for (const ins of parseDockerfile(text).instructions) {
    if (ins.keyword !== "FROM" || ins.onbuild) continue;
    const [image, as, stage] = argWords(ins);
    if (!image) continue;
    const internal = image.includes("$") || stages.has(image.toLowerCase()) || image.toLowerCase() === "scratch";
    out.push({ line: ins.line, image, internal });
    if (as?.toLowerCase() === "as" && stage) stages.add(stage.toLowerCase());
  }
  return out;
}

/** The external base images a Dockerfile starts from (no stage references, no ARG-built names, no scratch). */
export function baseImages(dockerfileText: string): Array<{ line: number; image: string }> {
  return scanFromLines(dockerfileText)
    .filter((f) => !f.internal)
    .map(({ line, image }) => ({ line, image }));
}

const DOCKER_HUB_PREFIXES = ["docker.io/library/", "index.docker.io/library/", "registry-1.docker.io/library/", "docker.io/", "index.docker.io/", "registry-1.docker.io/"];

/** Splits a reference into `repo` (Docker Hub prefixes removed) and `tag`/digest suffix (null when absent). */
function splitRef(ref: string): { repo: string; suffix: string | null } {
  let rest = ref.trim();
  for (const prefix of DOCKER_HUB_PREFIXES) {
    if (rest.toLowerCase().startsWith(prefix)) {
      rest = rest.slice(prefix.length);
      break;
    }
  }
  const at = rest.indexOf("@");
  if (at >= 0) return { repo: rest.slice(0, at), suffix: rest.slice(at) };
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) return { repo: rest.slice(0, colon), suffix: rest.slice(colon) };
  return { repo: rest, suffix: null };
}

/**
 * Returns a function that maps an image reference through `map`. Keys match with or without a Docker Hub
 * prefix (`docker.io/library/python:3.11` = `python:3.11`), a key without a tag means `:latest` and also
 * every other tag of that repository (an exact key wins).
 */
function imageMapper(map: Record<string, string>): (ref: string) => string | undefined {
  const exact = new Map<string, string>();
  const anyTag = new Map<string, string>();
  for (const [from, to] of Object.entries(map)) {
    const { repo, suffix } = splitRef(from);
    exact.set(`${repo}${suffix ?? ":latest"}`, to);
    if (suffix === null) anyTag.set(repo, to);
  }
  return (ref) => {
    const { repo, suffix } = splitRef(ref);
    return exact.get(`${repo}${suffix ?? ":latest"}`) ?? anyTag.get(repo);
  };
}

/**
 * Rewrites the image of every FROM line found in `map`, keeping flags (`--platform=…`), `AS name` and the
 * keyword's case. Stage references and images named through ARGs are left alone.
 */
export function rewriteFromLines(dockerfileText: string, map: Record<string, string>): string {
  if (Object.keys(map).length === 0) return dockerfileText;
  const lookup = imageMapper(map);
  // the FROM instructions Docker sees; one whose image is not on its first line (a continuation) is left alone
  const external = new Map(scanFromLines(dockerfileText).filter((f) => !f.internal).map((f) => [f.line, f.image]));
  return dockerfileText
    .split("\n")
    .map((raw, i) => {
      const cr = raw.endsWith("\r") ? "\r" : "";
      const m = FROM_LINE.exec(cr ? raw.slice(0, -1) : raw);
      if (!m || external.get(i + 1) !== m[3]) return raw;
      const to = lookup(m[3]);
      return to === undefined ? raw : `${m[1]}${m[2]}${to}${m[4]}${cr}`;
    })
    .join("\n");
}

// ---------------------------------------------------------------------------------------------------------
// Refused instructions (read by the one Dockerfile parser, dockerfile.ts, in both its readings)

const NETWORK_REASON = "builds never use the host's network or an insecure sandbox";
const MOUNT_RW_REASON = "a writable bind mount writes into the build context on the host, where a link planted by one RUN step is followed on the host by the next mount";
const MOUNT_FROM_REASON = "podman resolves the mount source of another stage or image on the host, following links in it; copy with COPY --from instead";
const FALSE = new Set(["false", "0", "f"]);

/**
 * The first RUN flag that would leave the build sandbox: `--network=<anything but none/default>` (newer
 * BuildKit and buildah honour `--network=host`), `--security=insecure`, or a `--mount` with `from=` (or a
 * variable, which can expand to one). Measured on podman 4.3: a link made in an earlier stage
 * (`ln -s /root /evil`), mounted with `--mount=type=bind,from=<stage>,source=evil,rw` or `type=cache,from=…`,
 * is followed on the host: host files read and written. A writable bind mount is refused too: measured,
 * `--mount=type=bind,source=.,target=/ctx,rw ln -s /host/dir /ctx/evil` planted a link in the host's copy of the
 * context, and a later `--mount=type=bind,source=evil,rw` wrote into /host/dir. Podman 4.3 makes a bind mount
 * writable for any `rw`/`readwrite` option whatever its value (measured: `rw=false` wrote), BuildKit for
 * `ro=false`: both count as writable. Flags are read as the engine reads them (quotes, escapes, continuations).
 */
export function refusedRunFlag(dockerfileText: string): { line: number; flag: string; reason: string } | undefined {
  for (const { line, keyword, flags } of bothReadings(dockerfileText)) {
    if (keyword !== "RUN") continue;
    for (const flag of flags) {
      const eq = flag.indexOf("=");
      const name = (eq < 0 ? flag : flag.slice(0, eq)).replace(/^--/, "").toLowerCase();
      const raw = eq < 0 ? "" : flag.slice(eq + 1);
      const v = raw.toLowerCase();
      if (name === "network" && v !== "none" && v !== "default") return { line, flag, reason: NETWORK_REASON };
      if (name === "security" && v !== "sandbox") return { line, flag, reason: NETWORK_REASON };
      if (name === "mount") {
        const opts = new Map(raw.split(",").map((kv) => {
          const i = kv.indexOf("=");
          return [(i < 0 ? kv : kv.slice(0, i)).trim().toLowerCase(), i < 0 ? "" : kv.slice(i + 1).trim().toLowerCase()] as const;
        }));
        if (raw.includes("$") || opts.has("from")) return { line, flag, reason: MOUNT_FROM_REASON };
        const type = opts.get("type") ?? "bind";
        const writable = opts.has("rw") || opts.has("readwrite") || ["ro", "readonly"].some((k) => FALSE.has(opts.get(k) ?? "-"));
        if (type === "bind" && writable) return { line, flag, reason: MOUNT_RW_REASON };
      }
    }
  }
  return undefined;
}

/**
 * The first `ADD` source that the engine would fetch itself, read as a shell word the way the engine reads it
 * (quotes removed, escapes applied: `ADD "http://127.0.0.1:…"` passed the old text check, measured, and podman
 * fetched it): a URL (`http://…`, any `scheme://`), a git remote (`git@host:…`, `user@host:path`, `github.com/…`),
 * a source built from a variable (an ARG, an ENV or the base image's environment can hold a URL), or a word the
 * engine cannot read. Podman fetches ADD URLs in the host's network namespace whatever the build network
 * (measured: `ADD http://127.0.0.1:<port>/…` read a 127.0.0.1-only server with `--network none`), so such a source
 * is refused; a task downloads with RUN instead. Heredoc sources (`ADD <<EOF /f`) are content.
 */
export function refusedAddSource(dockerfileText: string): { line: number; source: string } | undefined {
  const { escape } = parseDockerfile(dockerfileText);
  for (const ins of bothReadings(dockerfileText)) {
    if (ins.keyword !== "ADD") continue;
    const words = argWords(ins);
    for (const source of words.slice(0, -1)) {
      if (ins.heredocs.some((h) => /^\d*<<-?/.test(source) && source.includes(h.name))) continue;
      const w = shellWord(source, escape);
      if (w.error || w.variables.length || isRemoteSource(w.value)) return { line: ins.line, source };
    }
  }
  return undefined;
}

/** A source the engine fetches over the network rather than from the context. */
function isRemoteSource(src: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(src) || /^[\w.-]+@[^/:\s]+:/.test(src) || /^github\.com\//i.test(src);
}

/** The first instruction a build refuses, as one line for an error: `<file> line N: …`. */
export function dockerfileRefusal(dockerfileText: string, file: string): string | undefined {
  const run = refusedRunFlag(dockerfileText);
  const add = refusedAddSource(dockerfileText);
  if (run && (!add || run.line <= add.line)) return `${file} line ${run.line}: RUN ${run.flag} is refused (${run.reason})`;
  if (add) return `${file} line ${add.line}: ADD ${JSON.stringify(add.source)} is refused (the engine would fetch it from the host's network; download with RUN instead)`;
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Image maps from the command line or a file

const ImageMapFile = z.record(z.string().min(1), z.string().min(1));

/**
 * Parses `--image-map` values: `FROM=TO` pairs, or paths of JSON/YAML/TOML files holding `{ from: to }`.
 * A record is validated and returned as is. Later entries win.
 */
export function parseImageMap(specs: string[] | Record<string, string>): Record<string, string> {
  if (!Array.isArray(specs)) return validateMap(specs, "image map");
  const out: Record<string, string> = {};
  for (const spec of specs) {
    if (existsSync(spec) && statSync(spec).isFile()) {
      Object.assign(out, readImageMapFile(spec));
      continue;
    }
    const eq = spec.indexOf("=");
    const from = spec.slice(0, eq).trim();
    const to = spec.slice(eq + 1).trim();
    if (eq < 0 || !from || !to) {
      throw new Error(`bad --image-map '${spec}': expected FROM=TO (e.g. python:3.11=localhost/tb-base:bookworm) or a JSON/YAML/TOML file`);
    }
    out[from] = to;
  }
  return out;
}

function readImageMapFile(file: string): Record<string, string> {
  const text = readFileSync(file, "utf8");
  const ext = path.extname(file).toLowerCase();
  let data: unknown;
  try {
    data = ext === ".toml" ? parseToml(text) : ext === ".json" ? JSON.parse(text) : parseYaml(text); // YAML covers JSON too
  } catch (err) {
    throw new Error(`cannot parse image map file ${file}: ${oneLine((err as Error).message)}`);
  }
  return validateMap(data, `image map file ${file}`);
}

function validateMap(data: unknown, what: string): Record<string, string> {
  const parsed = ImageMapFile.safeParse(data ?? {});
  if (!parsed.success) throw new Error(`${what} must map image names to image names (strings), e.g. {"python:3.11": "localhost/tb-base:bookworm"}`);
  return parsed.data;
}

// ---------------------------------------------------------------------------------------------------------
// Building

/** In-flight builds by tag: concurrent trials of one task share a single build. */
const inFlight = new Map<string, Promise<string>>();

/**
 * Builds (or finds in cache) the image for `build` and returns its tag, `localhost/tmax-task:<16 hex>`.
 * The hash covers the context files (after .dockerignore), the rewritten Dockerfile and the IDs of its
 * local base images, so a rebuilt base image also yields a new tag.
 */
export async function buildImage(build: BuildSpec, docker: Docker, opts: BuildOptions = {}): Promise<string> {
  const plan = await planBuild(build, docker);
  const running = inFlight.get(plan.tag);
  if (running) return running;
  const job = (async () => {
    if (await imageExists(docker, plan.tag)) return plan.tag;
    await runBuild(plan, docker, build.timeoutSec ?? DEFAULT_BUILD_TIMEOUT_SEC, opts, build.network ?? "none");
    return plan.tag;
  })();
  inFlight.set(plan.tag, job);
  try {
    return await job;
  } finally {
    inFlight.delete(plan.tag);
  }
}

interface BuildPlan {
  tag: string;
  contextDir: string;
  items: PackItem[];
  dockerfileName: string;
}

/** A build's context dir and Dockerfile, checked, with the image map applied to its FROM lines. */
export async function readBuildDockerfile(build: Pick<BuildSpec, "contextDir" | "dockerfile" | "imageMap">): Promise<{ contextDir: string; dockerfilePath: string; original: string; rewritten: string }> {
  const contextDir = path.resolve(build.contextDir);
  if (!(await fs.stat(contextDir).catch(() => null))?.isDirectory()) {
    throw new SandboxError(`build context ${contextDir} is not a directory`, "build_failed");
  }
  const dockerfilePath = path.resolve(contextDir, build.dockerfile ?? "Dockerfile");
  const original = await fs.readFile(dockerfilePath, "utf8").catch(() => null);
  if (original === null) throw new SandboxError(`Dockerfile not found: ${dockerfilePath}`, "build_failed");
  const refused = refusedRunFlag(original);
  if (refused) throw new SandboxError(`${path.basename(dockerfilePath)} line ${refused.line}: RUN ${refused.flag} is refused (${refused.reason})`, "build_failed");
  return { contextDir, dockerfilePath, original, rewritten: rewriteFromLines(original, build.imageMap ?? {}) };
}

async function planBuild(build: BuildSpec, docker: Docker): Promise<BuildPlan> {
  const { contextDir, dockerfilePath, rewritten: dockerfile } = await readBuildDockerfile(build);
  // a local engine fetches ADD URLs itself, from the host's network namespace
  const add = refusedAddSource(dockerfile);
  if (add) throw new SandboxError(`${path.basename(dockerfilePath)} line ${add.line}: ADD ${JSON.stringify(add.source)} is refused (the engine would fetch it from the host's network; download with RUN instead)`, "build_failed");

  // Base images must be local (nothing is pulled); their IDs go into the hash.
  const baseIds: string[] = [];
  for (const { line, image } of baseImages(dockerfile)) {
    const info = await docker.getImage(image).inspect().catch((err) => {
      if (statusCode(err) === 404) return null;
      throw engineError(docker, err, "build_failed", `cannot inspect base image '${image}'`);
    });
    if (!info) {
      throw new SandboxError(
        `base image '${image}' (${path.basename(dockerfilePath)} line ${line}) not found locally; build it or map it with --image-map ${image}=<local image>`,
        "build_failed",
      );
    }
    // ONBUILD triggers of a base image run in this build: the same refusals as for the Dockerfile's own lines
    const triggers = ((info.Config as { OnBuild?: string[] | null } | undefined)?.OnBuild ?? []).join("\n");
    const addTrigger = refusedAddSource(triggers);
    const runTrigger = refusedRunFlag(triggers);
    const trigger = addTrigger ? { what: addTrigger.source, why: "the engine would fetch it from the host's network" } : runTrigger ? { what: runTrigger.flag, why: runTrigger.reason } : undefined;
    if (trigger) throw new SandboxError(`base image '${image}' (${path.basename(dockerfilePath)} line ${line}) has an ONBUILD trigger with ${JSON.stringify(trigger.what)}, refused (${trigger.why})`, "build_failed");
    baseIds.push(`${image}=${info.Id}`);
  }

  const relDockerfile = path.relative(contextDir, dockerfilePath).split(path.sep).join("/");
  const insideContext = !relDockerfile.startsWith("../") && !path.isAbsolute(relDockerfile);
  // podman/buildah run a Dockerfile whose name ends in `.in` through the host's cpp, where `#include "/any/file"`
  // reads host files into the build (measured: a root-only file appeared in the build log); under another name
  // the text is used as written, as Docker would
  const dockerfileName = insideContext && !/\.in$/i.test(relDockerfile) ? relDockerfile : ".tmax.Dockerfile";
  const entries = await contextEntries(contextDir, dockerfileName).catch((err: Error) => {
    throw new SandboxError(`build context ${contextDir}: ${err.message}`, "build_failed");
  });
  await refuseLinksOut(contextDir, entries);

  const hash = createHash("sha256");
  hash.update(`tmax-build-v1\0${dockerfileName}\0${dockerfile}\0${baseIds.join("\n")}\0`);
  const items: PackItem[] = [];
  for (const entry of entries) {
    if (entry.rel === dockerfileName) continue; // replaced by the rewritten text below
    items.push({ name: entry.rel, local: entry });
    hash.update(await entryDigest(entry));
  }
  items.push({ name: dockerfileName, content: Buffer.from(dockerfile), mode: 0o644 });
  const tag = `${TASK_IMAGE_REPO}:${hash.digest("hex").slice(0, 16)}`;
  return { tag, contextDir, items, dockerfileName };
}

/**
 * podman resolves a link in the context on the host when it is a `RUN --mount=type=bind` source, even for
 * writing (measured: `source=<link to /root>,rw` created a file in the host's /root). So a link whose target is
 * absolute, or resolves outside the context (or cannot be resolved and climbs with `..`), fails the build.
 */
async function refuseLinksOut(contextDir: string, entries: LocalEntry[]): Promise<void> {
  const root = await fs.realpath(contextDir);
  for (const e of entries) {
    if (e.linkTarget !== undefined && (await linkLeadsOut(root, e.abs, e.linkTarget))) {
      throw new SandboxError(`build context ${contextDir}: ${e.rel} is a link to ${JSON.stringify(e.linkTarget)}, outside the context (refused: the engine would follow it on the host)`, "build_failed");
    }
  }
}

async function entryDigest(entry: LocalEntry): Promise<string> {
  const mode = (entry.stat.mode & 0o7777).toString(8);
  if (entry.linkTarget !== undefined) return `L\0${entry.rel}\0${entry.linkTarget}\n`;
  if (entry.stat.isDirectory()) return `D\0${entry.rel}\0${mode}\n`;
  const content = createHash("sha256");
  for await (const chunk of createReadStream(entry.abs)) content.update(chunk as Buffer);
  return `F\0${entry.rel}\0${mode}\0${content.digest("hex")}\n`;
}

export async function imageExists(docker: Docker, tag: string): Promise<boolean> {
  try {
    await docker.getImage(tag).inspect();
    return true;
  } catch (err) {
    if (statusCode(err) === 404) return false;
    throw engineError(docker, err, "build_failed", `cannot inspect image ${tag}`);
  }
}

async function runBuild(plan: BuildPlan, docker: Docker, timeoutSec: number, opts: BuildOptions, network: BuildNetwork): Promise<void> {
  const abort = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    abort.abort();
  }, timeoutSec * 1000);
  const onAbort = () => abort.abort();
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  const log: string[] = [];
  let errorText: string | undefined;
  try {
    // RUN steps with a network are on a bridge: guard the host's own addresses first (once per process)
    if (network === "bridge") await ensureHostGuard(docker);
    if (await usePodmanCli(docker)) {
      // podman's build API ignores networkmode (RUN steps would share the host network): use its CLI
      const out = await podmanCliBuild(packItems(plan.items), {
        tag: plan.tag, dockerfile: plan.dockerfileName, labels: { [TMAX_IMAGE_LABEL]: "1" }, network, signal: abort.signal, onLog: opts.onLog,
        limitMemory: await podmanLimitsMemory(docker),
      });
      log.push(...out.log);
      if (timedOut) throw new Error("timeout");
      if (!out.ok) errorText = [...out.log].reverse().find((l) => /error/i.test(l)) ?? out.log.at(-1) ?? "podman build failed";
    } else {
    const stream = await docker.buildImage(packItems(plan.items) as unknown as NodeJS.ReadableStream, {
      t: plan.tag,
      dockerfile: plan.dockerfileName,
      rm: true,
      forcerm: true,
      networkmode: network,
      labels: { [TMAX_IMAGE_LABEL]: "1" },
      abortSignal: abort.signal,
    } as Docker.ImageBuildOptions);
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(
        stream,
        (err: Error | null) => (err ? reject(err) : resolve()),
        (event: { stream?: string; status?: string; error?: string; errorDetail?: { message?: string } }) => {
          const text = event.error ?? event.errorDetail?.message ?? event.stream ?? event.status;
          if (event.error || event.errorDetail) errorText = text;
          if (!text) return;
          for (const line of text.replace(/\n$/, "").split("\n")) {
            log.push(line);
            opts.onLog?.(line);
          }
        },
      );
    });
    }
  } catch (err) {
    if (timedOut) {
      throw new SandboxError(`image build timed out after ${timeoutSec}s (context ${plan.contextDir})`, "build_timeout", log.join("\n"));
    }
    if (opts.signal?.aborted) throw opts.signal.reason ?? err;
    if (!errorText) throw engineError(docker, err, "build_failed", `image build failed (context ${plan.contextDir})`);
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
  }
  if (errorText !== undefined) {
    // the step's own output, not Docker's builder chatter around it ("Removing intermediate container …", " ---> id")
    const chatter = /^\s*(Removing intermediate container|--->|Step \d+\/\d+ :|Successfully )/;
    const lastOutput = [...log].reverse().find((l) => l.trim() && !chatter.test(l) && !errorText!.includes(l.trim()));
    const detail = lastOutput ? `; last output: ${oneLine(lastOutput).slice(0, 300)}` : "";
    throw new SandboxError(withRootlessHint(`image build failed (context ${plan.contextDir}): ${lastLine(errorText)}${detail}`), "build_failed", log.join("\n"));
  }
  if (!(await imageExists(docker, plan.tag))) {
    throw new SandboxError(`image build finished without producing ${plan.tag} (context ${plan.contextDir})`, "build_failed", log.join("\n"));
  }
}

function lastLine(text: string): string {
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  return oneLine(lines[lines.length - 1] ?? text);
}
