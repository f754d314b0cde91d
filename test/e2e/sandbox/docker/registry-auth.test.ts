// An authenticated pull end to end: Debian's docker-registry on 127.0.0.1 behind TLS (a throwaway certificate
// trusted through /etc/containers/certs.d/<host:port>/ca.crt for this run only) and htpasswd, an image pushed
// to it, then the engine's pull through tmax with the credentials coming from a credential helper named by
// `credsStore` in a temp DOCKER_CONFIG — refused without them, and with a wrong secret.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import Docker from "dockerode";
import { DOCKER_HOST, ENGINE_SKIP } from "../../../support/env.js";
import { pullImage } from "../../../../src/sandbox/docker/pull.js";

const has = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" }).stdout.trim();
const registryBin = has("docker-registry");
const bcryptOk = spawnSync("python3", ["-W", "ignore", "-c", "import crypt; assert crypt.crypt('x', crypt.mksalt(crypt.METHOD_BLOWFISH)).startswith('$2')"]).status === 0;
const root = typeof process.getuid === "function" && process.getuid() === 0;
const SKIP =
  ENGINE_SKIP ||
  (!registryBin ? "skipped: docker-registry not installed (run `npm run setup`)" : false) ||
  (!has("openssl") ? "skipped: openssl not installed" : false) ||
  (!bcryptOk ? "skipped: python3 with bcrypt support in crypt (for the htpasswd file) not available" : false) ||
  (!root ? "skipped: trusting the test registry's certificate needs root (/etc/containers/certs.d)" : false);
if (SKIP && !ENGINE_SKIP) console.log(`# ${SKIP}`);

const tmp = mkdtempSync(path.join(os.tmpdir(), "tmax-registry-auth-e2e-"));
const RUN = randomBytes(4).toString("hex");
const USER = "tmaxpull";
const SECRET = `pw-${randomBytes(12).toString("hex")}`;
const LOCAL = `localhost/tmax-auth-test:${RUN}`;
let port = 0;
let ref = "";
let certsDir = "";
const CERTS_D = "/etc/containers/certs.d";
let certsParentMade = false;
let registry: ChildProcess | undefined;
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });

function sh(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", input });
  if (r.status !== 0) throw new Error(`${cmd} ${args[0]} failed: ${(r.stderr || r.stdout).slice(-500)}`);
  return r.stdout.trim();
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
    s.on("error", reject);
  });

/** The registry answers /v2/ over TLS (401 without credentials) once it is up. */
async function waitForRegistry(ca: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const status = await new Promise<number>((resolve) => {
      const req = https.get({ host: "127.0.0.1", port, path: "/v2/", ca, timeout: 1000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", () => resolve(0));
      req.on("timeout", () => req.destroy());
    });
    if (status === 401) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("the test registry did not come up");
}

/** A credential helper `docker-credential-<name>` in its own bin dir answering `get` for one host. */
function helperDir(name: string, host: string, user: string, secret: string): string {
  const bin = path.join(tmp, `bin-${name}`);
  mkdirSync(bin, { recursive: true });
  const file = path.join(bin, `docker-credential-${name}`);
  writeFileSync(
    file,
    `#!/bin/bash\n[ "$1" = get ] || exit 2\nread -r url\nif [ "$url" = ${JSON.stringify(host)} ]; then\n  printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}\\n' "$url" ${JSON.stringify(user)} ${JSON.stringify(secret)}\nelse\n  echo "credentials not found in native keychain"; exit 1\nfi\n`,
  );
  chmodSync(file, 0o755);
  return bin;
}

function dockerConfig(name: string, doc: object): string {
  const dir = path.join(tmp, `docker-${name}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "config.json"), JSON.stringify(doc));
  return dir;
}

/** Auth-file environment with nothing of the host's own (no podman auth.json, no ~/.docker). */
function isolatedEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: path.join(tmp, "home"), XDG_RUNTIME_DIR: path.join(tmp, "xdg"), ...extra };
}

const imageExists = () => spawnSync("podman", ["image", "exists", ref]).status === 0;
const removeImage = () => spawnSync("podman", ["rmi", "-f", ref], { stdio: "ignore" });

describe("authenticated pulls from a TLS registry through a credential helper", { skip: SKIP }, () => {
  before(async () => {
    port = await freePort();
    const host = `127.0.0.1:${port}`;
    ref = `${host}/tmax-test/auth:${RUN}`;
    const cert = path.join(tmp, "cert.pem");
    const key = path.join(tmp, "key.pem");
    sh("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]);
    const hash = sh("python3", ["-W", "ignore", "-c", "import crypt,sys; print(crypt.crypt(sys.stdin.read(), crypt.mksalt(crypt.METHOD_BLOWFISH)))"], SECRET);
    writeFileSync(path.join(tmp, "htpasswd"), `${USER}:${hash}\n`, { mode: 0o600 });
    const config = [
      "version: 0.1",
      "log:\n  level: error",
      `storage:\n  filesystem:\n    rootdirectory: ${path.join(tmp, "data")}`,
      `http:\n  addr: ${host}\n  tls:\n    certificate: ${cert}\n    key: ${key}`,
      `auth:\n  htpasswd:\n    realm: tmax-test\n    path: ${path.join(tmp, "htpasswd")}`,
    ].join("\n");
    writeFileSync(path.join(tmp, "registry.yml"), `${config}\n`);
    registry = spawn(registryBin, ["serve", path.join(tmp, "registry.yml")], { stdio: "ignore" });
    const ca = readFileSync(cert, "utf8");
    await waitForRegistry(ca);
    // the engine trusts this registry's certificate for this run only (read at each connection)
    certsParentMade = !existsSync(CERTS_D);
    certsDir = path.join(CERTS_D, host);
    mkdirSync(certsDir, { recursive: true });
    writeFileSync(path.join(certsDir, "ca.crt"), ca);
    // a one-file image, pushed with the registry's credentials, then gone from the engine
    const ctx = path.join(tmp, "ctx");
    mkdirSync(ctx);
    writeFileSync(path.join(ctx, "hello.txt"), `pulled with credentials ${RUN}\n`);
    sh("tar", ["-C", ctx, "-cf", path.join(tmp, "image.tar"), "hello.txt"]);
    sh("podman", ["import", path.join(tmp, "image.tar"), LOCAL]);
    sh("podman", ["push", "--quiet", "--creds", `${USER}:${SECRET}`, LOCAL, ref]);
    spawnSync("podman", ["rmi", "-f", LOCAL], { stdio: "ignore" });
    removeImage();
  });

  after(() => {
    removeImage();
    spawnSync("podman", ["rmi", "-f", LOCAL], { stdio: "ignore" });
    registry?.kill("SIGTERM");
    if (certsDir) rmSync(certsDir, { recursive: true, force: true });
    if (certsParentMade) {
      try {
        rmdirSync(CERTS_D); // only when empty: another run may use it now
      } catch {}
    }
    rmSync(tmp, { recursive: true, force: true });
  });

  test("without credentials the registry refuses the pull: one line, not retried", async () => {
    const env = isolatedEnv({ DOCKER_CONFIG: dockerConfig("empty", {}) });
    await assert.rejects(pullImage(docker, ref, { env, retries: 0 }), (e: Error) => /cannot pull/.test(e.message) && /unauthorized|authentication required|401/i.test(e.message) && !e.message.includes("\n"));
    assert.equal(imageExists(), false);
  });

  test("credsStore's helper supplies the credentials (from the default environment): the pull succeeds", async () => {
    const bin = helperDir("tmaxtest", `127.0.0.1:${port}`, USER, SECRET);
    const saved = { ...process.env };
    Object.assign(process.env, isolatedEnv({ DOCKER_CONFIG: dockerConfig("store", { credsStore: "tmaxtest", auths: { [`127.0.0.1:${port}`]: {} } }), PATH: `${bin}:${process.env.PATH}` }));
    try {
      const progress: string[] = [];
      await pullImage(docker, ref, { retries: 0, onProgress: (p) => progress.push(JSON.stringify(p)) });
      assert.equal(imageExists(), true);
      assert.ok(!progress.join("\n").includes(SECRET), "the secret never appears in progress events");
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
      removeImage();
    }
  });

  test("a wrong secret from credHelpers is refused, a missing helper is named; neither message carries a secret", async () => {
    const wrong = helperDir("wrong", `127.0.0.1:${port}`, USER, "not-the-password");
    const env = isolatedEnv({ DOCKER_CONFIG: dockerConfig("wrong", { credHelpers: { [`127.0.0.1:${port}`]: "wrong" } }), PATH: `${wrong}:${process.env.PATH}` });
    await assert.rejects(pullImage(docker, ref, { env, retries: 0 }), (e: Error) => /unauthorized|authentication required|401/i.test(e.message) && !e.message.includes("not-the-password"));
    const missing = isolatedEnv({ DOCKER_CONFIG: dockerConfig("missing", { credsStore: "desktop" }) });
    await assert.rejects(pullImage(docker, ref, { env: missing, retries: 0 }), (e: Error) => /credentials: docker-credential-desktop is not on PATH/.test(e.message));
    assert.equal(imageExists(), false);
  });
});
