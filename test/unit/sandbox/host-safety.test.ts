// Small guards of issue 8: terminal escapes, markdown, secret redaction, --pass-env templates, timeouts.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { stepPrinter } from "../../../src/cli/render.js";
import { EnvTemplateError, passedEnv, resolveEnvTemplates } from "../../../src/tasks/harbor.js";
import { checkTimeout, TimeoutConfigError } from "../../../src/tasks/timeouts.js";
import { redactAll, redactSecrets, registerSecret } from "../../../src/util/redact.js";
import { mdEscape, stripControl } from "../../../src/util/terminal.js";

test("stripControl removes CSI, OSC (title, clipboard), C1 and bidi controls; keeps newlines and tabs", () => {
  const evil = "a\u001b[31mred\u001b[0m b\u001b]0;title\u0007 c\u001b]52;c;ZXZpbA==\u001b\\ d\u009b2J e\u202eX\tf\ng\r";
  assert.equal(stripControl(evil), "ared b c d eX\tf\ng");
});

test("the step printer never writes an escape character from model or command text", () => {
  const lines: string[] = [];
  const print = stepPrinter((l) => lines.push(l));
  print({ type: "command", step: 0, command: "echo \u001b]52;c;cGF5bG9hZA==\u0007hi" } as never);
  print({ type: "exec", step: 0, exitCode: 0, timedOut: false, durationMs: 5, observation: "\u001b[2J\u001b]0;owned\u0007out\n\n(exit_code=0)" } as never);
  print({ type: "format_error", step: 0, error: "bad \u001b[5m" } as never);
  print({ type: "end", status: "error", error: "x\u001b]0;t\u0007" } as never);
  for (const l of lines) assert.ok(!/\u001b\]|\u0007|\u001b\[2J|\u001b\[5m/.test(l), JSON.stringify(l));
});

test("mdEscape keeps a markdown table intact", () => {
  assert.equal(mdEscape("a|b`c<script>\nx"), "a\\|b\\`c\\<script\\> x");
});

test("redaction: registered values, secret-named env vars, and key shapes", () => {
  registerSecret("registered-secret-123");
  process.env.H8_UNIT_SECRET = "env-secret-value-456";
  try {
    assert.equal(redactSecrets("x registered-secret-123 y env-secret-value-456"), "x *** y ***");
    assert.equal(redactAll("k=sk-proj-abcdefghijklmnopqrstuv hf_abcdefghijklmnopqrstuvwx Bearer abcdefghijklmnopqrstuvwxyz"), "k=*** *** Bearer ***");
  } finally {
    delete process.env.H8_UNIT_SECRET;
  }
});

test("--pass-env: only named variables expand, tmax's own keys never, unexpanded → one-line error", () => {
  const env = { URL: "${HOST_URL}", KEY: "${TMAX_API_KEY}", D: "${UNSET_X:-fallback}" };
  const host = { HOST_URL: "http://h", TMAX_API_KEY: "secret-key-123456" };
  assert.deepEqual(resolveEnvTemplates({ URL: env.URL, D: env.D }, passedEnv(["HOST_URL"], host)), { URL: "http://h", D: "fallback" });
  assert.throws(() => resolveEnvTemplates({ URL: env.URL }, passedEnv([], host)), (e: Error) => e instanceof EnvTemplateError && /--pass-env HOST_URL/.test(e.message) && !e.message.includes("\n"));
  assert.throws(() => passedEnv(["TMAX_API_KEY"], host), /never passed/);
  assert.throws(() => resolveEnvTemplates({ KEY: env.KEY }, passedEnv(["HOST_URL"], host)), EnvTemplateError);
});

test("timeouts: finite, > 0 and within the 2^31-1 ms timer range after the multiplier", () => {
  assert.equal(checkTimeout("agent timeout", 600, 2), 1200);
  assert.throws(() => checkTimeout("agent timeout", 3_000_000), (e: Error) => e instanceof TimeoutConfigError && /over the limit/.test(e.message));
  assert.throws(() => checkTimeout("agent timeout", 600, 1e6), /over the limit/);
  assert.throws(() => checkTimeout("agent timeout", 0), /> 0/);
  assert.throws(() => checkTimeout("agent timeout", Number.NaN), /> 0/);
  assert.throws(() => checkTimeout("agent timeout", 10, Number.POSITIVE_INFINITY), /multiplier/);
});

describe("host guard settings", () => {
  test("TMAX_HOST_GUARD: auto by default, off and require spelled a few ways", async () => {
    const { guardMode } = await import("../../../src/sandbox/docker/hostGuard.js");
    assert.equal(guardMode({}), "auto");
    for (const v of ["0", "off", "no", "false", "OFF"]) assert.equal(guardMode({ TMAX_HOST_GUARD: v }), "off", v);
    for (const v of ["require", "strict", "required"]) assert.equal(guardMode({ TMAX_HOST_GUARD: v }), "require", v);
  });

  test("interfaces: podman's bridges by default, Docker's on a Docker engine, a bad name refused in one line", async () => {
    const { guardInterfaces } = await import("../../../src/sandbox/docker/hostGuard.js");
    assert.deepEqual(guardInterfaces({}), ["podman+"]);
    assert.deepEqual(guardInterfaces({}, "docker"), ["docker0", "br-+"]);
    assert.deepEqual(guardInterfaces({ TMAX_HOST_GUARD_IFACES: "podman+, cni-podman0" }), ["podman+", "cni-podman0"]);
    assert.throws(() => guardInterfaces({ TMAX_HOST_GUARD_IFACES: "eth0 -j ACCEPT" }), /bad TMAX_HOST_GUARD_IFACES entry '-j'/);
    assert.throws(() => guardInterfaces({ TMAX_HOST_GUARD_IFACES: "a-very-long-interface-name" }), /bad TMAX_HOST_GUARD_IFACES/);
  });
});

test("RUN --network=host / --security=insecure are refused with their line; other RUN flags pass", async () => {
  const { refusedRunFlag } = await import("../../../src/sandbox/docker/build.js");
  const NET = "builds never use the host's network or an insecure sandbox";
  assert.deepEqual(refusedRunFlag("FROM x\nRUN --network=host curl 127.0.0.1\n"), { line: 2, flag: "--network=host", reason: NET });
  assert.deepEqual(refusedRunFlag("FROM x\nRUN --mount=type=cache,target=/c \\\n  --network=\"host\" make\n"), { line: 2, flag: "--network=host", reason: NET });
  assert.deepEqual(refusedRunFlag("FROM x\r\nrun --security=insecure id\r\n"), { line: 2, flag: "--security=insecure", reason: NET });
  assert.equal(refusedRunFlag("FROM x\nRUN --network=none make\nRUN --mount=type=bind,source=.,target=/src make\nRUN echo --network=host\n"), undefined);
  // a `# escape=` directive changes the continuation character; ONBUILD triggers are checked as well
  assert.deepEqual(refusedRunFlag("# escape=`\nFROM x\nRUN `\n --network=host curl h\n"), { line: 3, flag: "--network=host", reason: NET });
  assert.deepEqual(refusedRunFlag("FROM x\nONBUILD RUN --network=host id\n"), { line: 2, flag: "--network=host", reason: NET });
});

test("RUN --mount with from= (another stage or image) or a variable is refused: podman follows links in it on the host", async () => {
  const { refusedRunFlag } = await import("../../../src/sandbox/docker/build.js");
  const flag = (t: string) => refusedRunFlag(t)?.flag;
  assert.equal(flag("FROM x AS s\nFROM x\nRUN --mount=type=bind,from=s,source=evil,target=/h,rw touch /h/p\n"), "--mount=type=bind,from=s,source=evil,target=/h,rw");
  assert.equal(flag("FROM x\nRUN --mount=type=cache,target=/c --mount=\"type=cache,FROM=img,source=l,target=/h\" id\n"), "--mount=type=cache,FROM=img,source=l,target=/h");
  assert.equal(flag("FROM x\nARG F=from=s\nRUN --mount=type=bind,${F},source=evil,target=/h id\n"), "--mount=type=bind,${F},source=evil,target=/h");
  assert.match(refusedRunFlag("FROM x\nRUN --mount=type=bind,from=s,target=/h id\n")!.reason, /resolves the mount source of another stage or image on the host/);
  assert.equal(refusedRunFlag("FROM x\nRUN --mount=type=bind,source=src,target=/src --mount=type=cache,target=/root/.cache,id=pip --mount=type=tmpfs,target=/t make\n"), undefined);
  // writable bind mounts (bind is the default type): a RUN step could plant a link in the host's context copy
  // podman 4.3 makes any rw/readwrite option writable, `rw=false` too (measured); BuildKit does so for ro=false
  for (const m of ["type=bind,source=.,target=/c,rw", "source=.,target=/c,readwrite", "type=bind,target=/c,rw=true", "type=bind,target=/c,ro=false", "type=bind,target=/c,rw=false"]) {
    assert.match(refusedRunFlag(`FROM x\nRUN --mount=${m} id\n`)?.reason ?? "", /writable bind mount writes into the build context on the host/, m);
  }
  assert.equal(refusedRunFlag("FROM x\nRUN --mount=type=bind,target=/c,ro --mount=type=bind,target=/d,ro=true --mount=type=cache,target=/e,rw id\n"), undefined);
});

test("ADD from a URL or a variable is refused with its line (podman fetches it on the host's network); local ADD passes", async () => {
  const { refusedAddSource } = await import("../../../src/sandbox/docker/build.js");
  assert.deepEqual(refusedAddSource("FROM x\nADD http://127.0.0.1:8080/k /k\n"), { line: 2, source: "http://127.0.0.1:8080/k" });
  assert.deepEqual(refusedAddSource("FROM x\nadd --chown=1:1 --chmod=644 HTTPS://169.254.169.254/latest /m\n"), { line: 2, source: "HTTPS://169.254.169.254/latest" });
  assert.deepEqual(refusedAddSource('FROM x\nADD ["a.txt", "ftp://h/x", "/d/"]\n'), { line: 2, source: "ftp://h/x" });
  assert.deepEqual(refusedAddSource("FROM x\nARG U=http://127.0.0.1/\nADD \\\n  $U /k\n"), { line: 3, source: "$U" });
  assert.deepEqual(refusedAddSource("FROM x\nADD git@github.com:o/r.git /r\n"), { line: 2, source: "git@github.com:o/r.git" });
  assert.deepEqual(refusedAddSource("FROM x\nONBUILD ADD http://h/x /x\n"), { line: 2, source: "http://h/x" });
  assert.deepEqual(refusedAddSource("# escape=`\nFROM x\nADD `\n http://h/x /x\n"), { line: 3, source: "http://h/x" });
  assert.equal(refusedAddSource("FROM x\nADD app.tar.gz /opt/\nADD --chown=1 a b /dst/\nCOPY http.conf /etc/\n# ADD http://h/x /x\nRUN echo ADD http://x /y\n"), undefined);
});

test("a build refuses an ADD URL, a base image's ONBUILD trigger that reaches the network, before touching the engine", async () => {
  const { buildImage } = await import("../../../src/sandbox/docker/build.js");
  const fs = await import("node:fs/promises");
  const os = await import("node:os");
  const path = await import("node:path");
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-add-"));
  try {
    const onBuild = { getImage: () => ({ inspect: async () => ({ Id: "sha256:1", Config: { OnBuild: ["ADD http://127.0.0.1:1/x /x"] } }) }) };
    await fs.writeFile(path.join(dir, "Dockerfile"), "FROM base:1\nADD http://127.0.0.1:1/k /k\n");
    await assert.rejects(buildImage({ contextDir: dir }, onBuild as never), /Dockerfile line 2: ADD "http:\/\/127\.0\.0\.1:1\/k" is refused/);
    await fs.writeFile(path.join(dir, "Dockerfile"), "FROM base:1\nRUN true\n");
    await assert.rejects(buildImage({ contextDir: dir }, onBuild as never), /base image 'base:1' \(Dockerfile line 1\) has an ONBUILD trigger with "http:\/\/127\.0\.0\.1:1\/x", refused/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test("host guard that cannot be installed: one warning in auto mode, a refusal naming the reason with TMAX_HOST_GUARD=require", async () => {
  const { ensureHostGuard } = await import("../../../src/sandbox/docker/hostGuard.js");
  const { connectEngine } = await import("../../../src/sandbox/docker/engine.js");
  const saved = { path: process.env.PATH, mode: process.env.TMAX_HOST_GUARD };
  const warnings: string[] = [];
  const original = console.error;
  console.error = (...a: unknown[]) => void warnings.push(a.join(" "));
  process.env.PATH = "/nonexistent-tmax-bin"; // no iptables to run
  try {
    process.env.TMAX_HOST_GUARD = "require";
    await assert.rejects(ensureHostGuard(connectEngine("unix:///nonexistent/a.sock")), /host guard required \(TMAX_HOST_GUARD=require\) but not in place: /);
    process.env.TMAX_HOST_GUARD = "auto";
    const engine = connectEngine("unix:///nonexistent/b.sock");
    const reason = await ensureHostGuard(engine);
    assert.match(reason ?? "", /iptables|not root/);
    await ensureHostGuard(engine);
    assert.equal(warnings.filter((w) => /bridge containers can reach services on this host/.test(w)).length, 1, "warned once");
    process.env.TMAX_HOST_GUARD = "0";
    assert.equal(await ensureHostGuard(connectEngine("unix:///nonexistent/c.sock")), undefined, "switched off: nothing tried");
    // a remote engine's host is not this one: nothing to install here
    process.env.TMAX_HOST_GUARD = "require";
    assert.equal(await ensureHostGuard(connectEngine("tcp://192.0.2.200:2375")), undefined);
  } finally {
    console.error = original;
    process.env.PATH = saved.path;
    if (saved.mode === undefined) delete process.env.TMAX_HOST_GUARD;
    else process.env.TMAX_HOST_GUARD = saved.mode;
  }
});

test("build memory: TMAX_BUILD_MEMORY_MB when a whole number ≥ 64, else half the host's memory", async () => {
  const { buildMemoryMb } = await import("../../../src/sandbox/docker/buildNetwork.js");
  const os = await import("node:os");
  const half = Math.floor(os.totalmem() / 2 / 1024 / 1024);
  assert.equal(buildMemoryMb({ TMAX_BUILD_MEMORY_MB: "2048" }), 2048);
  for (const bad of [undefined, "", "0", "-5", "1e400", "NaN", "12.5", "10"]) assert.equal(buildMemoryMb({ TMAX_BUILD_MEMORY_MB: bad }), Math.max(512, half), String(bad));
});

test("environment notes and pull lines (task image names, registry and engine text) print no escape sequence", async () => {
  const { environmentPrinter } = await import("../../../src/cli/eval.js");
  const lines: string[] = [];
  const print = environmentPrinter((l) => lines.push(l));
  print("t__0", { type: "note", message: "cannot inspect image 'evil\u001b]0;pwned\u0007img:1'; building instead" });
  print("t__0", { type: "pull", progress: { image: "x\u001b[2Jy", status: "Trying to pull \u001b]52;c;ZXZpbA==\u0007" } });
  assert.equal(lines.length, 2);
  for (const l of lines) assert.ok(!/\u001b\]|\u001b\[2J|\u0007/.test(l), JSON.stringify(l));
  assert.match(lines[0]!, /evilimg:1/);
});
