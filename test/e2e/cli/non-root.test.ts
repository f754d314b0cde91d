// The README's main command (`tmax eval --dataset examples/tasks --agent oracle`) as an unprivileged user: on Docker
// Engine as a member of the socket's group, and on that user's rootless podman, found by discovery. The user is
// $TMAX_TEST_USER (default tmax-test; CI creates it); each case skips with its reason when what it needs is missing.
// Without root there is no host guard (iptables): the doctor and setup say so.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { probeEngine } from "../../../src/sandbox/docker/discover.js";
import { DOCKER_HOST, ENGINE_SKIP, EXAMPLES, ROOT, TEST_RUN } from "../../support/env.js";

const USER = process.env.TMAX_TEST_USER ?? "tmax-test";
const CLI = path.join(ROOT, "src/cli/main.ts");
const id = (flag: string) => spawnSync("id", [flag, USER], { encoding: "utf8" });
const uid = id("-u").status === 0 ? Number(id("-u").stdout.trim()) : undefined;
const groups = uid === undefined ? [] : id("-G").stdout.trim().split(/\s+/).map(Number);
const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
const readable = uid !== undefined && spawnSync("runuser", ["-u", USER, "--", "test", "-r", CLI], { encoding: "utf8" }).status === 0;

const BASE_SKIP =
  ENGINE_SKIP ||
  (!isRoot ? "skipped: switching to an unprivileged user needs root (runuser)" : false) ||
  (uid === undefined ? `skipped: no user ${USER} (useradd -m ${USER}; usermod -aG docker ${USER})` : false) ||
  (!readable ? `skipped: ${USER} cannot read ${CLI} (the checkout is not readable by others)` : false);
if (BASE_SKIP && !ENGINE_SKIP) console.log(`# ${BASE_SKIP}`);

/** The CLI as USER, in a job dir of its own; `env` replaces DOCKER_HOST (undefined: discovery decides). */
function asUser(args: string[], env: Record<string, string | undefined>): Promise<{ code: number | null; out: string }> {
  const jobs = spawnSync("runuser", ["-u", USER, "--", "mktemp", "-d"], { encoding: "utf8" }).stdout.trim();
  const vars = { HOME: `/home/${USER}`, PATH: process.env.PATH ?? "/usr/bin:/bin", NO_COLOR: "1", TMAX_TEST_RUN: TEST_RUN!, TMAX_PULL: "never", ...env };
  const list = Object.entries(vars).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`);
  return new Promise((resolve) => {
    const child = spawn("runuser", ["-u", USER, "--", "env", "-i", ...list, process.execPath, "--import", "tsx", CLI, ...args.map((a) => a.replace("{jobs}", jobs))], { cwd: ROOT });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("close", (code) => {
      spawnSync("rm", ["-rf", jobs]);
      resolve({ code, out });
    });
  });
}

const MAIN = ["eval", "--dataset", EXAMPLES, "--agent", "oracle", "--job-dir", "{jobs}/job"];

describe("the README's main command as an unprivileged user", { skip: BASE_SKIP }, () => {
  test("Docker Engine, as a member of the socket's group", async (t) => {
    const engine = await probeEngine({ host: DOCKER_HOST, source: "DOCKER_HOST" });
    const socket = DOCKER_HOST.replace(/^unix:\/\//, "");
    if (engine.kind !== "docker" || engine.rootless) return t.skip(`skipped: the engine under test is not a rootful Docker Engine (${engine.kind ?? engine.error})`);
    if (!existsSync(socket) || !groups.includes(statSync(socket).gid)) return t.skip(`skipped: ${USER} is not in the group of ${socket} (usermod -aG docker ${USER})`);
    const r = await asUser(MAIN, { DOCKER_HOST });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /mean reward 1\.000 over 3 trials/);
  });

  test("rootless podman of the user, found without DOCKER_HOST", async (t) => {
    if (!existsSync("/usr/bin/newuidmap")) return t.skip("skipped: uidmap is not installed (rootless podman needs newuidmap/newgidmap)");
    const socket = `/run/user/${uid}/podman/podman.sock`;
    const engine = await probeEngine({ host: `unix://${socket}`, source: "rootless podman" });
    if (!engine.ok) return t.skip(`skipped: ${USER}'s rootless podman does not answer at ${socket} (${engine.error}; as ${USER}: systemctl --user enable --now podman.socket)`);
    const r = await asUser(MAIN, { DOCKER_HOST: undefined, XDG_RUNTIME_DIR: `/run/user/${uid}` });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /mean reward 1\.000 over 3 trials/);
  });

  test("without an engine it may use, doctor names each socket and a fix a global install can run", async () => {
    const r = await asUser(["doctor", "--skip-model", "--json"], { DOCKER_HOST: undefined, XDG_RUNTIME_DIR: "/nonexistent" });
    const report = JSON.parse(r.out.slice(r.out.indexOf("{"))) as { engine: { source: string } | null; fix?: string; tried: { source: string; error?: string; fix?: string }[] };
    if (report.engine) {
      // this user has an engine after all (a Docker socket they may use): the report says which
      assert.ok(report.tried.at(-1)!.source === report.engine.source);
      return;
    }
    assert.equal(r.code, 1);
    assert.ok(report.tried.length >= 3, r.out);
    for (const p of report.tried) assert.doesNotMatch(p.fix ?? "", /npm run/);
    assert.match(report.fix ?? "", /systemctl|usermod|apt-get install/);
  });
});
