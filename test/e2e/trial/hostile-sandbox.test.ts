// A hostile task and a hostile policy against the host, in real containers: what comes back from a sandbox
// is data (no setuid, no links, no escapes, caps), tmax's records come from memory, builds do not see the
// host network, task templates do not read host secrets, and every case ends with one clear line.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import fs from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { SUBMIT_MARKER } from "../../../src/agent/observation.js";
import { runJob } from "../../../src/jobs/runner.js";
import type { TrialResult } from "../../../src/results/schema.js";
import { modelConfigFromOptions } from "../../../src/model/client.js";
import { readRollouts } from "../../../src/rl/records.js";
import { runRollout } from "../../../src/jobs/rollout.js";
import { generatedText } from "../../support/fake-vllm.js";
import { startTokenVllm } from "../../support/vllm-tokens.js";
import { jobOptions } from "../../support/jobs.js";
import { ENGINE_SKIP } from "../../support/env.js";

const tmp = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-hostile-test-"));
after(() => fs.rm(tmp, { recursive: true, force: true }));

/** A one-task dataset: tmax-base image, the given solve.sh (run as root by the oracle), a test that passes. */
async function makeTask(name: string, o: { solve: string; dockerfileExtra?: string; tomlExtra?: string; test?: string }): Promise<string> {
  const dataset = path.join(tmp, `ds-${name}-${Math.random().toString(36).slice(2, 6)}`);
  const dir = path.join(dataset, name);
  await fs.mkdir(path.join(dir, "environment"), { recursive: true });
  await fs.mkdir(path.join(dir, "solution"));
  await fs.mkdir(path.join(dir, "tests"));
  await fs.writeFile(path.join(dir, "instruction.md"), `Hostile task ${name}.\n`);
  await fs.writeFile(
    path.join(dir, "task.toml"),
    `[agent]\ntimeout_sec = 240.0\n[verifier]\ntimeout_sec = 60.0\n[environment]\nbuild_timeout_sec = 300.0\nmemory_mb = 1024\n${o.tomlExtra ?? ""}`,
  );
  await fs.writeFile(path.join(dir, "environment", "Dockerfile"), `FROM localhost/tmax-base:bookworm\nWORKDIR /app\n${o.dockerfileExtra ?? ""}`);
  await fs.writeFile(path.join(dir, "solution", "solve.sh"), `#!/bin/bash\n${o.solve}\n`, { mode: 0o755 });
  await fs.writeFile(path.join(dir, "tests", "test.sh"), o.test ?? "#!/bin/bash\nmkdir -p /logs/verifier\necho 1 > /logs/verifier/reward.txt\n", { mode: 0o755 });
  return dataset;
}

async function oracle(dataset: string, over: Parameters<typeof jobOptions>[1] = {}): Promise<{ result: TrialResult; trialDir: string }> {
  const opts = jobOptions(tmp, { datasetDir: dataset, concurrency: 1, ...over });
  const [result] = await runJob(opts);
  return { result, trialDir: path.join(opts.jobDir, result.trial_name) };
}

/** A task the selection refuses before the job starts: the one line it prints (nothing is built or run). */
async function refusedBeforeStart(dataset: string): Promise<string> {
  const { InvalidTasksError } = await import("../../../src/jobs/selection.js");
  const err = await runJob(jobOptions(tmp, { datasetDir: dataset, concurrency: 1 })).then(
    () => assert.fail("the job ran"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof InvalidTasksError, String(err));
  assert.equal(err.lines.length, 1, err.lines.join("\n"));
  assert.ok(!err.lines[0].includes("\n"));
  return err.lines[0];
}

/** A 127.0.0.1-only HTTP service on the host that counts the requests it gets. */
async function hostOnlyServer(): Promise<{ server: http.Server; port: number; hits: () => number }> {
  let hits = 0;
  const server = http.createServer((_req, res) => {
    hits++;
    res.end("secret");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as { port: number }).port, hits: () => hits };
}

/** Builds `dockerfile` with `env` set in tmax's own environment; returns the build log (the image is removed). */
async function buildLogged(name: string, dockerfile: string, env: Record<string, string>): Promise<string[]> {
  const ctx = await fs.mkdtemp(path.join(tmp, `${name}-`));
  await fs.writeFile(path.join(ctx, "Dockerfile"), dockerfile);
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  const { buildImage, connectEngine } = await import("../../../src/sandbox/index.js");
  const docker = connectEngine();
  const log: string[] = [];
  let tag: string | undefined;
  try {
    tag = await buildImage({ contextDir: ctx, timeoutSec: 120 }, docker, { onLog: (l) => log.push(l) });
    return log;
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    if (tag) await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
  }
}

/** Every entry under `dir` (lstat), for asserting what the host got. */
async function walk(dir: string): Promise<Array<{ rel: string; mode: number; size: number; link: boolean; dir: boolean }>> {
  const out: Array<{ rel: string; mode: number; size: number; link: boolean; dir: boolean }> = [];
  const go = async (d: string) => {
    for (const name of await fs.readdir(d)) {
      const abs = path.join(d, name);
      const st = await fs.lstat(abs);
      out.push({ rel: path.relative(dir, abs), mode: st.mode & 0o7777, size: st.blocks * 512, link: st.isSymbolicLink(), dir: st.isDirectory() });
      if (st.isDirectory()) await go(abs);
    }
  };
  await go(dir);
  return out;
}

function assertPlainData(entries: Awaited<ReturnType<typeof walk>>): void {
  for (const e of entries) {
    assert.equal(e.link, false, `${e.rel} is a symlink on the host`);
    assert.equal(e.mode & 0o7002, 0, `${e.rel} has mode ${e.mode.toString(8)} (setuid/setgid/sticky/world-writable)`);
    assert.ok(e.size <= 64 * 1024 * 1024 + 4096, `${e.rel} takes ${e.size} bytes on disk`);
  }
}

describe("hostile sandbox", { skip: ENGINE_SKIP }, () => {
  test("setuid, 777, symlinks (absolute, relative, /proc/self/environ), hard links, sparse and huge files, deep paths", async () => {
    const dataset = await makeTask("hostile-logs", {
      solve: [
        "set -e",
        "A=/logs/artifacts; mkdir -p $A/open",
        "cp /bin/bash $A/rootsh && chmod 4755 $A/rootsh",
        "chmod 777 $A/open; echo x > $A/open/ww; chmod 666 $A/open/ww; chmod 1777 $A",
        "ln -s /etc/passwd $A/abs; ln -s ../../../../../../etc/shadow $A/rel; ln -s /proc/self/environ $A/env",
        "ln $A/open/ww $A/hard",
        "truncate -s 3G $A/sparse.img",
        "head -c 70000000 /dev/zero > $A/huge.bin",
        "d=$A/deep; for i in $(seq 1 80); do d=$d/d; done; mkdir -p $d && echo deep > $d/f",
        "printf 'esc\\033]0;pwned\\007' > \"$A/$(printf 'name\\033[31m')\"",
        "rm -f /logs/agent/oracle.txt; ln -s /etc/hostname /logs/agent/trajectory.json",
      ].join("\n"),
    });
    const started = Date.now();
    const { result, trialDir } = await oracle(dataset);
    assert.equal(result.exception_info, null, result.exception_info?.exception_message);
    assert.equal(result.reward, 1);
    const entries = await walk(trialDir);
    assertPlainData(entries);
    const rels = entries.map((e) => e.rel);
    assert.ok(rels.includes("sandbox/artifacts/rootsh"), "the setuid file arrives as plain data");
    assert.equal(entries.find((e) => e.rel === "sandbox/artifacts/rootsh")!.mode, 0o755);
    assert.equal(entries.find((e) => e.rel === "sandbox/artifacts/open")!.mode, 0o755);
    for (const gone of ["sandbox/artifacts/abs", "sandbox/artifacts/rel", "sandbox/artifacts/env", "sandbox/artifacts/sparse.img", "sandbox/artifacts/huge.bin", "agent/oracle.txt"]) {
      assert.ok(!rels.includes(gone), `${gone} must not be on the host`);
    }
    assert.ok(!rels.some((r) => r.split("/").length > 70), "deep paths are cut");
    const manifest = readFileSync(path.join(trialDir, "sandbox", ".links.txt"), "utf8");
    assert.match(manifest, /symlink\tartifacts\/abs\t-> \/etc\/passwd/);
    assert.match(manifest, /symlink\tartifacts\/env\t-> \/proc\/self\/environ/);
    assert.match(manifest, /hardlink\tartifacts\/(hard|open\/ww)\t/);
    assert.match(manifest, /skipped\tartifacts\/sparse.img\tfile of 3221225472 bytes over/);
    assert.match(manifest, /skipped\tartifacts\/huge.bin\tfile of 70000000 bytes over/);
    assert.ok(!manifest.includes("\u001b"), "names in the manifest are escaped");
    assert.ok(result.downloads && result.downloads.links >= 4 && result.downloads.skipped >= 3);
    // the sandbox's trajectory.json link never replaced tmax's files
    assert.ok(!rels.includes("agent/trajectory.json"));
    assert.ok(Date.now() - started < 240_000);
  });

  test("100k files and a link as /logs/artifacts: the entry cap stops the download, the trial ends", async () => {
    const dataset = await makeTask("hostile-many", {
      solve: "mkdir -p /logs/agent/many && cd /logs/agent/many && seq 1 100000 | xargs touch\nrm -rf /logs/artifacts && ln -s / /logs/artifacts",
    });
    const { result, trialDir } = await oracle(dataset);
    assert.equal(result.exception_info, null, result.exception_info?.exception_message);
    const d = result.downloads!;
    assert.ok(d.entries <= 10_005, `${d.entries} entries`);
    assert.match(d.error ?? "", /more than 10000 entries/);
    const entries = await walk(trialDir);
    assertPlainData(entries);
    assert.ok(entries.length < 10_100);
    assert.ok(!entries.some((e) => e.rel.startsWith("sandbox/artifacts/etc")), "the container rootfs is not downloaded through the link");
  });

  test("/logs/artifacts itself a link to /: refused, recorded, nothing of the rootfs downloaded", async () => {
    const dataset = await makeTask("hostile-link", { solve: "rm -rf /logs/artifacts && ln -s / /logs/artifacts" });
    const { result, trialDir } = await oracle(dataset);
    assert.equal(result.exception_info, null, result.exception_info?.exception_message);
    const entries = await walk(trialDir);
    assertPlainData(entries);
    assert.ok(!entries.some((e) => e.rel.startsWith("sandbox/artifacts")), "nothing downloaded through the link");
    assert.match(readFileSync(path.join(trialDir, "sandbox", ".links.txt"), "utf8"), /artifacts\tthe downloaded path itself is a link: refused/);
  });

  // the link check used to run `readlink -f` from the container's PATH: a fake readlink echoing its argument
  // passed it, and the rootfs came down through the link (S18). The engine's path-stat cannot be faked from inside.
  test("/logs/artifacts a link to / with a fake readlink in PATH: still refused", async () => {
    const dataset = await makeTask("hostile-readlink", {
      solve: `printf '#!/bin/sh\\nfor a; do last=$a; done; echo "$last"\\n' > /usr/local/bin/readlink && chmod +x /usr/local/bin/readlink\nrm -rf /logs/artifacts && ln -s / /logs/artifacts`,
    });
    const { result, trialDir } = await oracle(dataset);
    assert.equal(result.exception_info, null, result.exception_info?.exception_message);
    const entries = await walk(trialDir);
    assert.ok(!entries.some((e) => e.rel.startsWith("sandbox/artifacts")), "nothing downloaded through the link");
    assert.match(readFileSync(path.join(trialDir, "sandbox", ".links.txt"), "utf8"), /artifacts\tthe downloaded path itself is a link: refused/);
  });

  test("a Dockerfile RUN cannot reach a 127.0.0.1 service on the host", async () => {
    const { server, port, hits } = await hostOnlyServer();
    try {
      const dataset = await makeTask("hostile-build", {
        dockerfileExtra: `RUN echo ${Date.now()} && (bash -c 'exec 3<>/dev/tcp/127.0.0.1/${port} && printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3 && cat <&3' > /reached.txt 2>&1 || echo unreachable > /reached.txt)\n`,
        solve: "cp /reached.txt /logs/artifacts/reached.txt",
      });
      const { result, trialDir } = await oracle(dataset);
      assert.equal(result.exception_info, null, result.exception_info?.exception_message);
      assert.equal(hits(), 0, "the build reached the host service");
      assert.match(readFileSync(path.join(trialDir, "sandbox/artifacts/reached.txt"), "utf8"), /unreachable/);
    } finally {
      server.close();
    }
  });

  test("ADD <url> is refused: podman would fetch it from the host's network (a 127.0.0.1-only server)", async () => {
    const { server, port, hits } = await hostOnlyServer();
    try {
      // measured on podman 4.3 before the refusal: the file was fetched with `--network none` and readable in RUN
      const dataset = await makeTask("hostile-add-url", { dockerfileExtra: `ARG U=http://127.0.0.1:${port}/k\nADD $U /k\n`, solve: "cp /k /logs/artifacts/k" });
      assert.match(await refusedBeforeStart(dataset), /Dockerfile line 4: ADD "\$U" is refused \(the engine would fetch it from the host's network/);
      assert.equal(hits(), 0, "the build reached the host service");
    } finally {
      server.close();
    }
  });

  test("a Dockerfile named *.in is not run through the host's cpp (#include of a host file)", async () => {
    const secretDir = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-host-secret-"));
    const secret = `host-only-${Date.now()}`;
    await fs.writeFile(path.join(secretDir, "secret.txt"), `${secret}\n`, { mode: 0o600 });
    const ctx = await fs.mkdtemp(path.join(tmp, "cpp-"));
    // measured on podman 4.3 before the fix: the included line became a build step, printed in the log and the error
    await fs.writeFile(path.join(ctx, "Dockerfile.in"), `FROM localhost/tmax-base:bookworm\n#include "${secretDir}/secret.txt"\nRUN echo ${secret.length} > /len\n`);
    const { buildImage, connectEngine } = await import("../../../src/sandbox/index.js");
    const log: string[] = [];
    const docker = connectEngine();
    let tag: string | undefined;
    try {
      tag = await buildImage({ contextDir: ctx, dockerfile: "Dockerfile.in", timeoutSec: 120 }, docker, { onLog: (l) => log.push(l) });
      assert.ok(!log.join("\n").includes(secret), "the host file reached the build");
    } finally {
      if (tag) await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
      await fs.rm(secretDir, { recursive: true, force: true });
    }
  });

  test("a build does not see tmax's environment: proxy credentials and API keys stay out of RUN steps", async () => {
    // measured on podman 4.3 before --http-proxy=false: http_proxy with its password was in the RUN step's env
    const log = await buildLogged(
      "env",
      `FROM localhost/tmax-base:bookworm\nARG TMAX_API_KEY\nARG http_proxy\nRUN echo ${Date.now()}; env; echo "k=$TMAX_API_KEY p=$http_proxy"\n`,
      { http_proxy: "http://user:proxy-pw-1@127.0.0.1:9/", HTTPS_PROXY: "http://user:proxy-pw-2@127.0.0.1:9/", TMAX_API_KEY: "tmax-key-3" },
    );
    assert.match(log.join("\n"), /k= p=/);
    assert.doesNotMatch(log.join("\n"), /proxy-pw|tmax-key-3/);
  });

  test("a compose healthcheck that never passes (retries 1e9) or a sidecar that never exits ends at the build timeout, one line", async () => {
    const cases = [
      ["healthcheck", `    command: ["sleep", "infinity"]\n    healthcheck:\n      test: ["CMD", "false"]\n      interval: 0.1s\n      retries: 1000000000\n`, /service 'side' did not become healthy within 8s/],
      ["completed", `    command: ["sleep", "infinity"]\n  main:\n    depends_on:\n      side:\n        condition: service_completed_successfully\n`, /service 'side' did not complete within 8s/],
    ] as const;
    for (const [name, side, re] of cases) {
      const dataset = await makeTask(`hostile-compose-${name}`, { solve: "true" });
      const dir = path.join(dataset, `hostile-compose-${name}`);
      await fs.writeFile(path.join(dir, "task.toml"), `[agent]\ntimeout_sec = 60.0\n[verifier]\ntimeout_sec = 60.0\n[environment]\nbuild_timeout_sec = 8.0\n`);
      await fs.writeFile(path.join(dir, "environment", "docker-compose.yaml"), `services:\n  side:\n    image: localhost/tmax-base:bookworm\n${side}`);
      // measured before the deadline: the trial waited forever (retries: 1e9, or .nan)
      const started = Date.now();
      const { result } = await oracle(dataset);
      assert.match(result.exception_info?.exception_message ?? "", re);
      assert.ok(!result.exception_info!.exception_message.includes("\n"));
      assert.ok(Date.now() - started < 40_000, `took ${Date.now() - started} ms`);
    }
  });

  test("RUN --mount from= another stage holding a link (invisible in the context) is refused: no host file read or written", async () => {
    const victim = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-host-victim-"));
    await fs.writeFile(path.join(victim, "secret.txt"), "host-only-secret\n");
    // measured on podman 4.3 before the refusal: the stage's link was followed on the host, `planted` was created in `victim`
    // and secret.txt was read (bind, rw), and a cache mount from= with a relative link wrote there too
    const dataset = await makeTask("hostile-mount-from", {
      dockerfileExtra: `FROM localhost/tmax-base:bookworm AS s1\nRUN ln -s ${victim} /evil\nFROM localhost/tmax-base:bookworm\nRUN --mount=type=bind,from=s1,source=evil,target=/h,rw cp /h/secret.txt /stolen; echo pwned > /h/planted; true\n`,
      solve: "cp /stolen /logs/artifacts/stolen || true",
    });
    assert.match(await refusedBeforeStart(dataset), /Dockerfile line 6: RUN --mount=type=bind,from=s1,source=evil,target=\/h,rw is refused \(podman resolves the mount source of another stage or image on the host/);
    assert.deepEqual(await fs.readdir(victim), ["secret.txt"], "nothing written on the host");
    await fs.rm(victim, { recursive: true, force: true });
  });

  test("FROM $ARG / COPY --from=<image> are never pulled: no connection to a 127.0.0.1 'registry'", async () => {
    let connections = 0;
    const server = net.createServer((sock) => {
      connections++;
      sock.destroy();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as net.AddressInfo).port;
    const { buildImage, connectEngine } = await import("../../../src/sandbox/index.js");
    try {
      // measured before --pull=never: podman tried https://127.0.0.1:<port>/v2/ from the host for both
      for (const [name, text] of [
        ["arg", `ARG IMG=127.0.0.1:${port}/x/y:1\nFROM $IMG\nRUN true\n`],
        ["copy", `FROM localhost/tmax-base:bookworm\nCOPY --from=127.0.0.1:${port}/x/y:2 /etc/hostname /h\n`],
      ]) {
        const ctx = await fs.mkdtemp(path.join(tmp, `pull-${name}-`));
        await fs.writeFile(path.join(ctx, "Dockerfile"), text);
        await assert.rejects(buildImage({ contextDir: ctx, timeoutSec: 60 }, connectEngine()), (err: Error & { kind?: string }) => err.kind === "build_failed" && !err.message.includes("\n"));
      }
      assert.equal(connections, 0, "the build reached the host service");
    } finally {
      server.close();
    }
  });

  test("a build's RUN steps have a memory limit (TMAX_BUILD_MEMORY_MB, else half the host's memory)", async () => {
    // measured before: memory.limit_in_bytes was 2^63 in a RUN step, so one build could exhaust the host's memory
    const log = await buildLogged(
      "mem",
      `FROM localhost/tmax-base:bookworm\nRUN echo ${Date.now()}; echo "limit=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"\n`,
      { TMAX_BUILD_MEMORY_MB: "300" },
    );
    assert.ok(log.includes(`limit=${300 * 1024 * 1024}`), log.join("\n"));
  });

  test("a writable bind mount of the context is refused: a RUN step could plant a link there for the next mount", async () => {
    const victim = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-host-victim-"));
    // measured on podman 4.3 before the refusal: the first step made `evil` in the host's copy of the context, the
    // second wrote `planted` into `victim` on the host (the context had no link when tmax checked it)
    const dataset = await makeTask("hostile-ctx-rw", {
      dockerfileExtra: `RUN --mount=type=bind,source=.,target=/ctx,rw ln -s ${victim} /ctx/evil\nRUN --mount=type=bind,source=evil,target=/h,rw echo pwned > /h/planted; true\n`,
      solve: "true",
    });
    assert.match(await refusedBeforeStart(dataset), /Dockerfile line 3: RUN --mount=type=bind,source=\.,target=\/ctx,rw is refused \(a writable bind mount writes into the build context on the host/);
    assert.deepEqual(await fs.readdir(victim), [], "nothing written on the host");
    await fs.rm(victim, { recursive: true, force: true });
  });

  test("a link out of the task (a RUN --mount bind source) is refused: nothing on the host is read or written", async () => {
    const secretDir = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-host-secret-"));
    await fs.writeFile(path.join(secretDir, "secret.txt"), "host-only-secret\n");
    const dataset = await makeTask("hostile-link", {
      // measured on podman 4.3: a bind source that is a link in the context is resolved on the host, rw included
      dockerfileExtra: `RUN --mount=type=bind,source=hostdir,target=/h,rw cp /h/secret.txt /stolen.txt; echo pwned > /h/planted.txt; true\n`,
      solve: "cp /stolen.txt /logs/artifacts/stolen.txt",
    });
    const taskDir = path.join(dataset, "hostile-link");
    await fs.symlink(secretDir, path.join(taskDir, "environment", "hostdir"));
    // an inner relative link is fine (kept as a link)
    await fs.writeFile(path.join(taskDir, "environment", "real.txt"), "inside\n");
    await fs.symlink("real.txt", path.join(taskDir, "environment", "alias.txt"));
    // an invalid task: refused before the job starts, one line naming the link
    const refused = (await oracle(dataset).catch((e: Error & { lines?: string[] }) => e)) as Error & { lines?: string[] };
    assert.match(refused.message, /^1 invalid task\(s\), refused before the job starts/);
    assert.equal(refused.lines?.length, 1, refused.lines?.join("\n"));
    assert.match(refused.lines![0]!, /environment\/hostdir: link to .* leads out of the task/);
    assert.doesNotMatch(refused.lines![0]!, /alias\.txt/);
    assert.equal(await fs.stat(path.join(secretDir, "planted.txt")).catch(() => null), null, "nothing written on the host");

    // the build layer refuses it on its own too (for callers that build without the task loader); read-only here,
    // since a writable bind mount is refused before the link check
    await fs.writeFile(path.join(taskDir, "environment", "Dockerfile"), "FROM localhost/tmax-base:bookworm\nRUN --mount=type=bind,source=hostdir,target=/h cp /h/secret.txt /stolen.txt; true\n");
    const { buildImage, connectEngine } = await import("../../../src/sandbox/index.js");
    await assert.rejects(
      buildImage({ contextDir: path.join(taskDir, "environment"), timeoutSec: 120 }, connectEngine()),
      (err: Error & { kind?: string }) => err.kind === "build_failed" && /hostdir is a link to .* outside the context/.test(err.message),
    );
    assert.equal(await fs.stat(path.join(secretDir, "planted.txt")).catch(() => null), null, "nothing written on the host");
    await fs.rm(secretDir, { recursive: true, force: true });
  });

  test("a RUN --mount=type=cache cannot leave a setuid-root file on the host", async () => {
    const marker = `rootsh-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    const dataset = await makeTask("hostile-cache", {
      dockerfileExtra: `RUN --mount=type=cache,target=/c cp /bin/bash /c/${marker} && chmod 4755 /c/${marker} && chmod 777 /c\n`,
      solve: "true",
    });
    const { result } = await oracle(dataset);
    assert.equal(result.exception_info, null, result.exception_info?.exception_message);
    // podman's default cache parent, and tmax's private cache: nothing of the build is left anywhere
    const found = execFileSync("find", ["/var/tmp", os.homedir(), os.tmpdir(), "-xdev", "-name", marker], { encoding: "utf8" }).trim();
    assert.equal(found, "", `a file planted through a cache mount survived the build: ${found}`);
  });

  test("${TMAX_API_KEY} in task.toml is never expanded; --pass-env expands only what is named", async () => {
    const saved = { k: process.env.TMAX_API_KEY, o: process.env.H8_PASSED_TOKEN };
    process.env.TMAX_API_KEY = "tmax-hostile-key-0123456789";
    process.env.H8_PASSED_TOKEN = "passed-token-9876543210";
    try {
      const leak = await makeTask("hostile-env", { tomlExtra: 'env = { LEAK = "${TMAX_API_KEY}" }\n', solve: "echo \"$LEAK\" > /logs/artifacts/leak.txt" });
      const a = await oracle(leak);
      assert.equal(a.result.exception_info?.exception_type, "EnvTemplateError");
      assert.match(a.result.exception_info!.exception_message, /--pass-env TMAX_API_KEY/);
      assert.ok(!a.result.exception_info!.exception_message.includes("\n"));
      const b = await oracle(leak, { passEnv: ["TMAX_API_KEY"] });
      assert.match(b.result.exception_info?.exception_message ?? "", /tmax's own key is never passed/);

      // a passed secret-named variable reaches the task, and is masked in what comes back
      const passed = await makeTask("hostile-pass", {
        tomlExtra: 'env = { VALUE = "${H8_PASSED_TOKEN}" }\n',
        solve: 'echo "value=$VALUE" > /logs/artifacts/value.txt',
        test: '#!/bin/bash\nmkdir -p /logs/verifier\necho "verifier sees $(cat /logs/artifacts/value.txt)"\necho 1 > /logs/verifier/reward.txt\n',
      });
      const c = await oracle(passed, { passEnv: ["H8_PASSED_TOKEN"] });
      assert.equal(c.result.exception_info, null, c.result.exception_info?.exception_message);
      assert.equal(readFileSync(path.join(c.trialDir, "sandbox/artifacts/value.txt"), "utf8"), "value=***\n");
      assert.match(readFileSync(path.join(c.trialDir, "verifier/test-stdout.txt"), "utf8"), /verifier sees value=\*\*\*/);
      const all = JSON.stringify(await walk(c.trialDir));
      assert.ok(!all.includes("passed-token-9876543210"));
    } finally {
      for (const [k, v] of [["TMAX_API_KEY", saved.k], ["H8_PASSED_TOKEN", saved.o]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  test("a forged /logs/agent/trajectory.json never reaches rollout records", async () => {
    const forged = {
      schema: "tmax.trajectory/v1",
      exitStatus: "submitted",
      steps: [{ model: { promptTokenIds: [4242, 4242], completionTokenIds: [4242], logprobs: [{ token: "FORGED", logprob: 0 }] } }],
    };
    const b64 = Buffer.from(JSON.stringify(forged)).toString("base64");
    const forge = `echo ${b64} | base64 -d > /logs/agent/trajectory.json`;
    const solve = "mkdir -p /app && printf 'Hello, tmax!\\n' > /app/hello.txt";
    // rollouts sample token-in/token-out: the stand-in with the real tokenizer
    // one sample of the group solves and one does not (seeds differ per sample), so the group is informative and kept
    const server = await startTokenVllm({
      complete: (ctx) => ({ text: generatedText({ text: "THOUGHT", commands: [`${forge}; ${ctx.body.seed % 2 ? solve : "true"}; echo ${SUBMIT_MARKER}`] }) }),
    });
    try {
      const dataset = await makeTask("hostile-forge", {
        solve,
        test: "#!/bin/bash\nmkdir -p /logs/verifier\nif [ -f /app/hello.txt ]; then echo 1; else echo 0; fi > /logs/verifier/reward.txt\n",
      });
      const outDir = path.join(tmp, "rollout-forge");
      await runRollout({
        datasetDir: dataset, outDir, runName: "forge", steps: 1, startStep: 1, uniqueTasks: 1, samplesPerTask: 2, concurrency: 1, maxGroupsPerStep: 1,
        timeoutMultiplier: 1, imageMap: {}, backend: "docker", network: "task", seed: 1, maxStaleness: 4, learnerBatch: false,
        agentLimits: { maxSteps: 1 },
        model: modelConfigFromOptions({ baseUrl: server.baseUrl, profile: "train" }),
      });
      const records = [];
      for await (const r of readRollouts(outDir)) records.push(r as { response_tokens: number[]; prompt_tokens: number[]; trajectory_path: string });
      assert.equal(records.length, 2);
      for (const r of records) {
        assert.ok(r.response_tokens.length > 1 && !r.prompt_tokens.every((t) => t === 4242), "records hold the real tokens");
        const onDisk = readFileSync(r.trajectory_path, "utf8");
        assert.ok(!onDisk.includes("FORGED"), "tmax's trajectory file is the real one");
      }
    } finally {
      await server.close();
    }
  });

  test("a full job dir (tiny tmpfs): the extraction aborts, is recorded, and the run ends", { skip: process.getuid?.() === 0 ? false : "skipped: needs root to mount a tmpfs" }, async (t) => {
    const mnt = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-fulldisk-"));
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt]);
    } catch {
      await fs.rm(mnt, { recursive: true, force: true });
      t.skip("skipped: cannot mount a tmpfs here");
      return;
    }
    try {
      const dataset = await makeTask("hostile-full", { solve: "head -c 8000000 /dev/urandom > /logs/artifacts/fill.bin" });
      const opts = jobOptions(mnt, { datasetDir: dataset, concurrency: 1 });
      const [result] = await runJob(opts);
      assert.match(result.downloads?.error ?? "", /ENOSPC/);
      assert.equal(result.reward, 1);
      const saved = JSON.parse(readFileSync(path.join(opts.jobDir, result.trial_name, "result.json"), "utf8")) as TrialResult;
      assert.match(saved.downloads?.error ?? "", /ENOSPC/);
    } finally {
      execFileSync("umount", ["-l", mnt]);
      await fs.rm(mnt, { recursive: true, force: true });
    }
  });
});
