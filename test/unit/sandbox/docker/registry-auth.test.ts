// Registry credentials: the resolution order over auth files, `auths`, `credsStore` and `credHelpers`, with real
// credential helpers (bash scripts speaking Docker's helper protocol) on a temp PATH and a temp DOCKER_CONFIG.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { authFiles, lookupAuth, registryHost } from "../../../../src/sandbox/docker/registryAuth.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "tmax-registry-auth-"));
test.after(() => rmSync(tmp, { recursive: true, force: true }));
const bin = path.join(tmp, "bin");
mkdirSync(bin);
const asked = path.join(tmp, "asked.log");

/**
 * A helper `docker-credential-<name>`: `get` reads the server URL from stdin, logs it to asked.log, and answers
 * from its table (host → "user secret"), or "credentials not found" with exit 1 as the real helpers do.
 */
function helper(name: string, table: Record<string, string>, extra = ""): void {
  const cases = Object.entries(table)
    .map(([host, cred]) => {
      const [user, secret] = cred.split(" ");
      return `  ${JSON.stringify(host)}) printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}\\n' "$url" ${JSON.stringify(user)} ${JSON.stringify(secret)} ;;`;
    })
    .join("\n");
  const script = `#!/bin/bash
[ "$1" = get ] || { echo "unsupported: $1" >&2; exit 2; }
read -r url
echo "${name} $url" >> ${JSON.stringify(asked)}
${extra}
case "$url" in
${cases}
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
`;
  const file = path.join(bin, `docker-credential-${name}`);
  writeFileSync(file, script);
  chmodSync(file, 0o755);
}

function dockerConfig(name: string, doc: object): { DOCKER_CONFIG: string; file: string } {
  const dir = path.join(tmp, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "config.json"), JSON.stringify(doc));
  return { DOCKER_CONFIG: dir, file: path.join(dir, "config.json") };
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
const env = (extra: Record<string, string>) => ({ PATH: `${bin}:/usr/bin:/bin`, HOME: path.join(tmp, "home"), XDG_RUNTIME_DIR: path.join(tmp, "run"), ...extra });
/** The helper calls since the last look (`<helper> <server URL>` each). */
const askedLines = (): string[] => {
  const lines = existsSync(asked) ? readFileSync(asked, "utf8").trim().split("\n") : [];
  rmSync(asked, { force: true });
  return lines;
};

helper("store", { "ghcr.io": "alice from-store", "https://index.docker.io/v1/": "hubuser hub-secret", "127.0.0.1:5443": "<token> id-token-1" });
helper("gcloud", { "gcr.io": "oauth2accesstoken gcr-secret" });
helper("broken", {}, "exit 3");
helper("noisy", {}, `echo "leaked-secret-xyz" >&2; echo '{not json'; exit 0`);

test("registry hosts of image references", () => {
  assert.equal(registryHost("alexgshaw/regex-log:20251031"), "docker.io");
  assert.equal(registryHost("python:3.13"), "docker.io");
  assert.equal(registryHost("127.0.0.1:5055/x/y:1"), "127.0.0.1:5055");
  assert.equal(registryHost("localhost/tmax-base:bookworm"), "localhost");
  assert.equal(registryHost("ghcr.io/a/b@sha256:00"), "ghcr.io");
});

test("auth files in podman's order: REGISTRY_AUTH_FILE, runtime auth.json, config auth.json, then Docker's config.json", () => {
  const e = { HOME: "/h", XDG_RUNTIME_DIR: "/run/user/7", REGISTRY_AUTH_FILE: "/etc/auth.json", DOCKER_CONFIG: "/d" };
  assert.deepEqual(authFiles(e), ["/etc/auth.json", "/run/user/7/containers/auth.json", "/h/.config/containers/auth.json", "/d/config.json"]);
  assert.deepEqual(authFiles({ HOME: "/h", XDG_RUNTIME_DIR: "/r", XDG_CONFIG_HOME: "/c" }), ["/r/containers/auth.json", "/c/containers/auth.json", "/h/.docker/config.json"]);
});

test("credsStore: Docker Desktop's store is asked with the host (Docker Hub's v1 URL), its answer wins over stale auths", async () => {
  const cfg = dockerConfig("store", { credsStore: "store", auths: { "ghcr.io": { auth: b64("stale:old") }, "https://index.docker.io/v1/": {} } });
  const ghcr = await lookupAuth("ghcr.io/org/img:1", { env: env({ DOCKER_CONFIG: cfg.DOCKER_CONFIG }) });
  assert.deepEqual(ghcr, { auth: { username: "alice", password: "from-store", serveraddress: "ghcr.io" }, source: "docker-credential-store", problems: [] });
  assert.deepEqual(askedLines(), ["store ghcr.io"]);
  const hub = await lookupAuth("python:3.13-slim", { env: env({ DOCKER_CONFIG: cfg.DOCKER_CONFIG }) });
  assert.deepEqual(hub.auth, { username: "hubuser", password: "hub-secret", serveraddress: "docker.io" });
  assert.deepEqual(askedLines(), ["store https://index.docker.io/v1/"]);
  // Username "<token>": the secret is an identity token, sent as such
  const tok = await lookupAuth("127.0.0.1:5443/t/x:1", { env: env({ DOCKER_CONFIG: cfg.DOCKER_CONFIG }) });
  assert.deepEqual(tok.auth, { identitytoken: "id-token-1", serveraddress: "127.0.0.1:5443" });
  askedLines();
});

test("credHelpers per registry come before credsStore; a store with nothing falls back to the file's auths", async () => {
  const cfg = dockerConfig("helpers", { credsStore: "store", credHelpers: { "gcr.io": "gcloud", "https://ghcr.io": "gcloud" }, auths: { "quay.io": { auth: b64("qu:ay") } } });
  const e = env({ DOCKER_CONFIG: cfg.DOCKER_CONFIG });
  assert.deepEqual((await lookupAuth("gcr.io/p/i", { env: e })).auth, { username: "oauth2accesstoken", password: "gcr-secret", serveraddress: "gcr.io" });
  assert.deepEqual(askedLines(), ["gcloud gcr.io"]);
  // ghcr.io's helper (gcloud) has nothing for it: the store is asked next
  assert.deepEqual((await lookupAuth("ghcr.io/o/i", { env: e })).auth, { username: "alice", password: "from-store", serveraddress: "ghcr.io" });
  assert.deepEqual(askedLines(), ["gcloud ghcr.io", "store ghcr.io"]);
  const quay = await lookupAuth("quay.io/o/i", { env: e });
  assert.deepEqual(quay, { auth: { username: "qu", password: "ay", serveraddress: "quay.io" }, source: cfg.file, problems: [] });
  assert.deepEqual(askedLines(), ["store quay.io"]);
});

test("podman's auth.json before Docker's config; repository-scoped keys before the host; the first file with credentials wins", async () => {
  const cfg = dockerConfig("both", { credsStore: "store" });
  const runtime = path.join(tmp, "run", "containers");
  mkdirSync(runtime, { recursive: true });
  writeFileSync(path.join(runtime, "auth.json"), JSON.stringify({ auths: { "ghcr.io/org/special": { auth: b64("scoped:one") }, "ghcr.io": { auth: b64("podman:host") } } }));
  const e = env({ DOCKER_CONFIG: cfg.DOCKER_CONFIG });
  assert.deepEqual((await lookupAuth("ghcr.io/org/special:2", { env: e })).auth, { username: "scoped", password: "one", serveraddress: "ghcr.io" });
  assert.deepEqual((await lookupAuth("ghcr.io/org/other:2", { env: e })).auth, { username: "podman", password: "host", serveraddress: "ghcr.io" });
  assert.deepEqual(askedLines(), [], "Docker's store is not asked when podman's file answers");
  // REGISTRY_AUTH_FILE comes first of all
  const explicit = path.join(tmp, "explicit.json");
  writeFileSync(explicit, JSON.stringify({ auths: { "https://ghcr.io": { username: "explicit", password: "pw" } } }));
  assert.deepEqual((await lookupAuth("ghcr.io/org/special", { env: { ...e, REGISTRY_AUTH_FILE: explicit } })).auth, { username: "explicit", password: "pw", serveraddress: "ghcr.io" });
  rmSync(path.join(runtime, "auth.json"));
});

test("a failing, missing or garbled helper is named without its output; other sources still answer", async () => {
  const cfg = dockerConfig("bad", { credsStore: "broken", credHelpers: { "ghcr.io": "absent", "quay.io": "noisy", "x.io": "../../bin/sh" }, auths: { "ghcr.io": { auth: b64("file:fallback") } } });
  const e = env({ DOCKER_CONFIG: cfg.DOCKER_CONFIG });
  const ghcr = await lookupAuth("ghcr.io/o/i", { env: e });
  assert.deepEqual(ghcr.auth, { username: "file", password: "fallback", serveraddress: "ghcr.io" });
  assert.deepEqual(ghcr.problems, ["docker-credential-absent is not on PATH", "docker-credential-broken get exited with 3"]);
  const quay = await lookupAuth("quay.io/o/i", { env: e });
  assert.equal(quay.auth, undefined);
  assert.deepEqual(quay.problems, ["docker-credential-noisy get printed no JSON", "docker-credential-broken get exited with 3"]);
  assert.ok(!JSON.stringify(quay).includes("leaked-secret-xyz"));
  const odd = await lookupAuth("x.io/o/i", { env: e });
  assert.match(odd.problems[0]!, /is not a plain name/);
  askedLines();
});

test("no credentials anywhere: nothing, and an unreadable or malformed file is skipped", async () => {
  const cfg = dockerConfig("none", {});
  writeFileSync(path.join(tmp, "garbage.json"), "{ not json");
  const r = await lookupAuth("registry.example/o/i", { env: env({ DOCKER_CONFIG: cfg.DOCKER_CONFIG, REGISTRY_AUTH_FILE: path.join(tmp, "garbage.json") }) });
  assert.deepEqual(r, { problems: [] });
});
