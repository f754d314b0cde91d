// `tmax setup`: the base images, made through the engine tmax finds (see src/sandbox/docker/baseImages.ts for the
// routes), and the host guard when this process may install it. With no engine at all, as root on a Debian host,
// it runs the packaged scripts/setup-sandbox.sh (installs rootful podman); elsewhere it says what to do.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ensureBaseImages } from "../sandbox/docker/baseImages.js";
import { discoverEngine, engineLine } from "../sandbox/docker/discover.js";
import { tunProblem } from "../sandbox/docker/rootless.js";
import { connectEngine } from "../sandbox/docker/engine.js";
import { dim } from "./render.js";

export interface SetupOptions {
  /** The Debian image to pull for tmax-base (default $TMAX_SETUP_DEBIAN_IMAGE, else debian:bookworm-slim). */
  debianImage?: string;
  verbose?: boolean;
}

const say = (line: string) => console.error(`tmax setup: ${line}`);

export async function setupCommand(o: SetupOptions): Promise<number> {
  const uid = typeof process.getuid === "function" ? process.getuid() : 0;
  const found = await discoverEngine();
  if (!found.engine) {
    const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../scripts/setup-sandbox.sh");
    if (uid === 0 && existsSync("/usr/bin/apt-get") && existsSync(script)) {
      say("no container engine answers; installing rootful podman (Debian, root)");
      return spawnSync("bash", [script], { stdio: "inherit" }).status ?? 1;
    }
    say(`no container engine answers: ${found.fix}`);
    return 1;
  }
  const engine = found.engine;
  say(`engine: ${engineLine(engine)}`);
  // rootless podman here: without a usable /dev/net/tun the tb-base build (and every task with a network) fails
  const tun = engine.kind === "podman" && engine.rootless && engine.host.startsWith("unix://") ? tunProblem() : undefined;
  if (tun) {
    say(`${tun.what}; fix: ${tun.fix}`);
    return 1;
  }
  const docker = connectEngine(engine.host);
  try {
    const steps = await ensureBaseImages(docker, {
      debianImage: o.debianImage,
      uid,
      onStep: say,
      onOutput: o.verbose ? (line) => console.error(dim(line)) : undefined,
    });
    for (const s of steps) say(`${s.image}: ${s.how} (${s.detail})`);
  } catch (err) {
    say((err as Error).message);
    return 1;
  }
  if (engine.rootless) say("host guard: not applicable to a rootless engine (see `tmax doctor`)");
  else if (uid !== 0) say("host guard: needs root; run `sudo tmax sandbox guard` once per boot");
  else {
    const { hostInterfaces, installHostGuard } = await import("../sandbox/docker/hostGuard.js");
    try {
      await installHostGuard(await hostInterfaces(process.env, engine.kind));
      say("host guard: installed");
    } catch (err) {
      say(`warning: the host guard could not be installed: ${(err as Error).message}`);
    }
  }
  say(`ready${engine.source === "DOCKER_HOST" ? "" : ` (tmax finds this engine by itself; DOCKER_HOST=${engine.host} pins it)`}`);
  return 0;
}
