// `tmax setup`'s base images through the engine under test (podman or Docker Engine): the pull route against a
// local registry stand-in (Debian's docker-registry on 127.0.0.1:5056 holding a Debian image pushed here, as a
// public registry would serve debian:bookworm-slim), tb-base built on it from Debian's mirror, a second run that
// finds both, and the one line a machine with no route gets. The images carry this run's own names.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { connectEngine, dockerBackend } from "../../../../src/sandbox/index.js";
import { ensureBaseImages } from "../../../../src/sandbox/docker/baseImages.js";
import { probeEngine } from "../../../../src/sandbox/docker/discover.js";
import { BASE_IMAGE, DOCKER_HOST, ENGINE_SKIP, TEST_RUN } from "../../../support/env.js";

const REG = "127.0.0.1:5056"; // trusted as plain HTTP by podman through scripts/setup-sandbox.sh; Docker trusts 127.0.0.0/8
const RUN = Math.random().toString(36).slice(2, 8);
const DEBIAN = `${REG}/debian:bookworm-slim-${RUN}`;
const names = { base: `localhost/tmax-setup-test-base:${RUN}`, tb: `localhost/tmax-setup-test-tb:${RUN}` };
const registryBin = spawnSync("sh", ["-c", "command -v docker-registry"], { encoding: "utf8" }).stdout.trim();
const SKIP = ENGINE_SKIP || (registryBin ? false : "skipped: docker-registry not installed (the local registry stand-in; `npm run setup` installs it)");
if (SKIP && !ENGINE_SKIP) console.log(`# ${SKIP}`);

describe("base images through the engine (tmax setup)", { skip: SKIP }, () => {
  let docker = connectEngine();
  const tmp = mkdtempSync(path.join(os.tmpdir(), "tmax-base-images-"));
  let registry: ChildProcess | undefined;
  let service: ChildProcess | undefined;

  before(async () => {
    // a podman API service reads registries.conf.d once: ours (same storage) trusts the stand-in as the file says now
    const engine = await probeEngine({ host: DOCKER_HOST, source: "DOCKER_HOST" });
    if (engine.kind === "podman" && !engine.rootless) {
      const socket = path.join(tmp, "podman.sock");
      service = spawn("podman", ["system", "service", "--time=0", `unix://${socket}`], { stdio: "ignore" });
      for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 100));
      docker = connectEngine(`unix://${socket}`);
    }
    const conf = path.join(tmp, "registry.yml");
    writeFileSync(conf, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${tmp}/data\nhttp:\n  addr: ${REG}\n`);
    registry = spawn(registryBin, ["serve", conf], { stdio: "ignore" });
    for (let i = 0; i < 100; i++) {
      if (await fetch(`http://${REG}/v2/`).then((r) => r.ok, () => false)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    // the stand-in holds a Debian image, pushed through the engine's own API; the local tag goes again so that
    // setup has to pull it
    const [repo, tag] = [DEBIAN.slice(0, DEBIAN.lastIndexOf(":")), DEBIAN.slice(DEBIAN.lastIndexOf(":") + 1)];
    await docker.getImage(BASE_IMAGE).tag({ repo, tag });
    const push = await docker.getImage(DEBIAN).push({ authconfig: {} } as object);
    await new Promise<void>((resolve, reject) =>
      docker.modem.followProgress(push, (err: Error | null, events: { error?: string }[]) => {
        const failed = err ?? events.find((e) => e.error)?.error;
        return failed ? reject(failed instanceof Error ? failed : new Error(failed)) : resolve();
      }),
    );
    await docker.getImage(DEBIAN).remove({ noprune: true });
  });

  after(async () => {
    registry?.kill("SIGTERM");
    service?.kill("SIGTERM");
    for (const image of [names.tb, names.base, DEBIAN]) await docker.getImage(image).remove({ force: true }).catch(() => undefined);
    rmSync(tmp, { recursive: true, force: true });
  });

  test("pulls the Debian image for tmax-base, builds tb-base on it; a second run finds both", async () => {
    const said: string[] = [];
    const steps = await ensureBaseImages(docker, { names, debianImage: DEBIAN, routes: ["pull"], onStep: (l) => said.push(l) });
    assert.deepEqual(steps.map((s) => [s.image, s.how]), [[names.base, "pulled"], [names.tb, "built"]]);
    assert.ok(said.some((l) => l.includes(`pulling ${DEBIAN}`)), said.join("\n"));

    const sb = await dockerBackend({ docker }).create({ image: names.tb, network: "none", name: "setup-test", labels: { "io.tmax.test-run": TEST_RUN! } });
    try {
      const r = await sb.exec(["python", "-c", "import pytest, sys; print(sys.version_info[0])"]);
      assert.deepEqual([r.exitCode, r.stdout.trim()], [0, "3"], r.stderr);
    } finally {
      await sb.remove();
    }
    const again = await ensureBaseImages(docker, { names, debianImage: DEBIAN, routes: ["pull"] });
    assert.deepEqual(again.map((s) => s.how), ["present", "present"]);
  });

  test("no route: one line that names what is missing", async () => {
    const missing = { base: `localhost/tmax-setup-test-none:${RUN}`, tb: `localhost/tmax-setup-test-none-tb:${RUN}` };
    await assert.rejects(
      ensureBaseImages(docker, { names: missing, debianImage: `${REG}/nothing-here:${RUN}`, uid: 1000 }),
      (err: Error) => {
        assert.match(err.message, new RegExp(`^cannot make ${missing.base}: the engine cannot pull ${REG}/nothing-here:${RUN} \\(.+\\); building from Debian's mirror with mmdebstrap needs root$`));
        assert.ok(!err.message.includes("\n"));
        return true;
      },
    );
  });
});
