// What a Daytona sandbox is made from, decided the way Harbor's Daytona environment decides it
// (harbor src/harbor/environments/daytona.py, _DaytonaDirect.start), mapped onto tmax's SandboxSpec:
//   1. a snapshot: when a snapshot name template is configured (Harbor: snapshot_template_name, e.g.
//      "harbor__{name}__snapshot"; `{name}` is the task's name) and a snapshot of that name exists in state
//      "active". Any other state, or a failed lookup, counts as no snapshot. It wins even over --force-build
//      (Harbor only warns then); the sandbox gets no resources of its own (a snapshot carries them).
//   2. the task's Dockerfile (Image.fromDockerfile): with --force-build, or when the task names no prebuilt image.
//   3. the prebuilt image (task.toml's docker_image; Harbor: Image.base(docker_image)). The SDK turns an image
//      name given as a string into the same `FROM <name>` build (Daytona.js create, 0.218.0), so the name is passed.
//      Unlike the docker backend there is no local pull to fall back from: a missing image fails the create.
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { readBuildDockerfile } from "../docker/build.js";
import { oneLine, type DaytonaClientLike, type DaytonaImageLike, type DaytonaSdkLike } from "./sdk.js";
import { SandboxError, type SandboxSpec } from "../types.js";

export type ImagePlan =
  | { kind: "snapshot"; snapshot: string; imageName: string; note?: string }
  | { kind: "dockerfile"; image: DaytonaImageLike; imageName: string; cleanup: () => Promise<void> }
  | { kind: "image"; image: string; imageName: string };

/** The snapshot name for a task: every `{name}` in the template replaced by the task's name. */
export function snapshotName(template: string, name: string): string {
  return template.split("{name}").join(name);
}

/** Whether `name` is an active snapshot (Harbor's test); a lookup error means no. */
export async function activeSnapshot(client: DaytonaClientLike, name: string): Promise<{ active: boolean; state?: string; reason?: string }> {
  try {
    const snap = await client.snapshot.get(name);
    return { active: snap.state === "active", state: snap.state, reason: snap.errorReason ?? undefined };
  } catch (err) {
    return { active: false, reason: oneLine((err as Error)?.message ?? String(err)) };
  }
}

export async function planImage(sdk: DaytonaSdkLike, client: DaytonaClientLike, spec: SandboxSpec, opts: { snapshotTemplate?: string } = {}): Promise<ImagePlan> {
  if (opts.snapshotTemplate && spec.name) {
    const name = snapshotName(opts.snapshotTemplate, spec.name);
    if ((await activeSnapshot(client, name)).active) {
      return { kind: "snapshot", snapshot: name, imageName: `snapshot:${name}`, ...(spec.forceBuild ? { note: `--force-build: the active Daytona snapshot '${name}' is used anyway (as Harbor does)` } : {}) };
    }
  }
  const prebuilt = spec.prebuilt ?? spec.image;
  if (spec.build && (spec.forceBuild || !prebuilt)) {
    const built = await prepareBuild(sdk, spec.build);
    return { kind: "dockerfile", image: built.image, imageName: `dockerfile:${path.resolve(spec.build.contextDir)}`, cleanup: built.cleanup };
  }
  if (prebuilt) return { kind: "image", image: prebuilt, imageName: prebuilt };
  throw new SandboxError("a sandbox needs an image or a build context", "create_failed");
}

/**
 * The SDK's Dockerfile builder reads the Dockerfile and resolves COPY/ADD sources next to it. With an image
 * map that changes a FROM line (or a Dockerfile outside the context), the context is copied to a temp dir
 * and the rewritten Dockerfile written there, so the task's own files are never touched.
 */
async function prepareBuild(sdk: DaytonaSdkLike, build: NonNullable<SandboxSpec["build"]>): Promise<{ image: DaytonaImageLike; cleanup: () => Promise<void> }> {
  const { contextDir, dockerfilePath, original, rewritten } = await readBuildDockerfile(build);
  const rel = path.relative(contextDir, dockerfilePath);
  const inside = !rel.startsWith("..") && !path.isAbsolute(rel);

  let dockerfile = dockerfilePath;
  let tempDir: string | undefined;
  if (rewritten !== original || !inside) {
    tempDir = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-daytona-build-"));
    const copy = path.join(tempDir, "context");
    await fs.cp(contextDir, copy, { recursive: true, verbatimSymlinks: true });
    dockerfile = path.join(copy, inside ? rel : ".tmax.Dockerfile");
    await fs.writeFile(dockerfile, rewritten);
  }
  const cleanup = async () => {
    if (tempDir) await fs.rm(tempDir, { recursive: true, force: true });
  };
  try {
    return { image: sdk.Image.fromDockerfile(dockerfile), cleanup };
  } catch (err) {
    await cleanup();
    throw new SandboxError(`cannot use ${dockerfilePath} with Daytona: ${oneLine((err as Error).message ?? String(err))}`, "build_failed");
  }
}
