// The README's main command (`tmax eval --dataset examples/tasks --agent oracle`) and a real TB2 task (oracle 1,
// nop 0; $TMAX_TEST_TB2_TASKS, default regex-log) as an unprivileged user: on Docker Engine as a member of the
// socket's group, and on that user's rootless podman, found by discovery (its API service started here, as the
// user, when none answers, and stopped afterwards). The user is $TMAX_TEST_USER (default tmax-test; CI does not
// make it: the time budget); each case skips with its reason when what it needs is missing. Without root there is
// no host guard (iptables): the doctor and setup say so.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import Docker from "dockerode";
import { probeEngine } from "../../../src/sandbox/docker/discover.js";
import { DOCKER_HOST, ENGINE_SKIP, EXAMPLES, ROOT, SHARED_SKIP, SHARED_TASKS, TEST_RUN } from "../../support/env.js";

const USER = process.env.TMAX_TEST_USER ?? "tmax-test";
const CLI = path.join(ROOT, "src/cli/main.ts");
const id = (flag: string) => spawnSync("id", [flag, USER], { encoding: "utf8" });
const uid = id("-u").status === 0 ? Number(id("-u").stdout.trim()) : undefined;
const groups = uid === undefined ? [] : id("-G").stdout.trim().split(/\s+/).map(Number);
const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
const asUserOk = (...args: string[]) => uid !== undefined && spawnSync("runuser", ["-u", USER, "--", ...args], { encoding: "utf8" }).status === 0;
const readable = asUserOk("test", "-r", CLI);
const TB2_TASK = process.env.TMAX_TEST_TB2_TASKS?.split(",")[0]?.trim() || "regex-log";
const TB2_SKIP = SHARED_SKIP || (!asUserOk("test", "-r", path.join(SHARED_TASKS, TB2_TASK, "task.toml")) ? `skipped: ${USER} cannot read ${path.join(SHARED_TASKS, TB2_TASK)}` : false);

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
const tb2 = (agent: string) => ["eval", "--dataset", SHARED_TASKS, "--include", TB2_TASK, "--agent", agent, "--job-dir", "{jobs}/job"];

/** The real TB2 task as USER on the engine `env` selects: the oracle scores 1, doing nothing 0. */
async function tb2Pair(env: Record<string, string | undefined>): Promise<void> {
  const oracle = await asUser(tb2("oracle"), env);
  assert.equal(oracle.code, 0, oracle.out);
  assert.match(oracle.out, /mean reward 1\.000 over 1 trial/, oracle.out);
  const nop = await asUser(tb2("nop"), env);
  assert.equal(nop.code, 0, nop.out);
  assert.match(nop.out, /mean reward 0\.000 over 1 trial/, nop.out);
}

/**
 * USER's rootless podman, as discovery finds it with no XDG_RUNTIME_DIR (runuser: no login session): the service
 * that answers, else one started here as USER (its socket in /run/user/<uid> or podman's $TMPDIR/podman-run-<uid>).
 * A string: why it cannot run here.
 */
async function rootlessPodman(): Promise<{ stop: () => Promise<void> } | string> {
  if (!existsSync("/usr/bin/newuidmap")) return "skipped: uidmap is not installed (rootless podman needs newuidmap/newgidmap)";
  if (!asUserOk("sh", "-c", "command -v podman")) return "skipped: podman is not installed";
  // rootless networking (slirp4netns, pasta) opens the tun device as the user; `tmax doctor` names the same fix
  if (!asUserOk("test", "-r", "/dev/net/tun", "-a", "-w", "/dev/net/tun")) return `skipped: /dev/net/tun is not read-write for ${USER} (sudo chmod 0666 /dev/net/tun)`;
  const sockets = [`/run/user/${uid}/podman/podman.sock`, `/tmp/podman-run-${uid}/podman/podman.sock`];
  const answers = async () => {
    for (const s of sockets) if ((await probeEngine({ host: `unix://${s}`, source: "rootless podman" })).ok) return `unix://${s}`;
    return "";
  };
  // the base images are the user's own (rootless storage): `tmax setup` as the user makes them
  const missing = async (host: string) => {
    const docker = new Docker({ socketPath: host.replace(/^unix:\/\//, "") });
    for (const image of ["localhost/tmax-base:bookworm", "localhost/tb-base:bookworm"]) {
      if (!(await docker.getImage(image).inspect().then(() => true, () => false))) return `skipped: ${USER}'s podman has no ${image} (as ${USER}: tmax setup)`;
    }
    return undefined;
  };
  const running = await answers();
  if (running) return (await missing(running)) ?? { stop: async () => undefined };
  const service = spawn("runuser", ["-u", USER!, "--", "env", "-i", `HOME=/home/${USER}`, "PATH=/usr/bin:/bin", "podman", "system", "service", "--time=0"], { stdio: "ignore", detached: true });
  const stop = async () => {
    if (service.exitCode !== null) return;
    const gone = new Promise((resolve) => service.once("exit", resolve));
    process.kill(-service.pid!, "SIGTERM");
    await gone;
  };
  for (let i = 0; i < 100 && service.exitCode === null; i++) {
    const host = await answers();
    if (host) {
      const why = await missing(host);
      if (why) await stop();
      return why ?? { stop };
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  await stop();
  return `skipped: ${USER}'s podman system service did not answer at ${sockets.join(" or ")}`;
}

describe("the README's main command as an unprivileged user", { skip: BASE_SKIP }, () => {
  test("Docker Engine, as a member of the socket's group", async (t) => {
    const engine = await probeEngine({ host: DOCKER_HOST, source: "DOCKER_HOST" });
    const socket = DOCKER_HOST.replace(/^unix:\/\//, "");
    if (engine.kind !== "docker" || engine.rootless) return t.skip(`skipped: the engine under test is not a rootful Docker Engine (${engine.kind ?? engine.error})`);
    if (!existsSync(socket) || !groups.includes(statSync(socket).gid)) return t.skip(`skipped: ${USER} is not in the group of ${socket} (usermod -aG docker ${USER})`);
    const r = await asUser(MAIN, { DOCKER_HOST });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /mean reward 1\.000 over 3 trials/);
    if (TB2_SKIP) return t.diagnostic(TB2_SKIP);
    await tb2Pair({ DOCKER_HOST });
  });

  test("rootless podman of the user, found without DOCKER_HOST or XDG_RUNTIME_DIR", async (t) => {
    const podman = await rootlessPodman();
    if (typeof podman === "string") return t.skip(podman);
    try {
      // discovery finds the user's rootless podman, and the doctor has nothing to fail (the tun device included)
      const doctor = await asUser(["doctor", "--skip-model", "--json"], { DOCKER_HOST: undefined });
      const report = JSON.parse(doctor.out.slice(doctor.out.indexOf("{"))) as { ok: boolean; engine: { kind?: string; rootless?: boolean } | null };
      assert.equal(report.ok, true, doctor.out);
      assert.deepEqual([report.engine?.kind, report.engine?.rootless], ["podman", true], doctor.out);
      const r = await asUser(MAIN, { DOCKER_HOST: undefined });
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /mean reward 1\.000 over 3 trials/);
      if (TB2_SKIP) return t.diagnostic(TB2_SKIP);
      await tb2Pair({ DOCKER_HOST: undefined });
    } finally {
      await podman.stop();
    }
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
