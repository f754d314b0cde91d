// Loading the optional Daytona SDK: tmax's own resolution first, then a global install next to tmax or under npm's
// global prefix, so that the install hint (`npm i -g @daytonaio/sdk`) works for a global tmax, npx and a checkout.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { MISSING_SDK_MESSAGE, SDK_INSTALL_FIX, loadSdk, sdkSearchRoots } from "../../../../src/sandbox/daytona/sdk.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "tmax-sdk-load-"));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

/** A package at <root>/@daytonaio/sdk with the two exports tmax checks, as CommonJS or ESM. */
function fakeSdk(root: string, kind: "commonjs" | "module", version: string): void {
  const dir = path.join(root, "@daytonaio", "sdk");
  mkdirSync(path.join(dir, "lib"), { recursive: true });
  writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "@daytonaio/sdk", version, type: kind, exports: { ".": "./lib/index.js" } }));
  const body =
    kind === "commonjs"
      ? `class Daytona { constructor(c) { this.c = c; } }\nexports.Daytona = Daytona;\nexports.Image = { fromDockerfile: (p) => ({ dockerfile: p }) };\nexports.VERSION = ${JSON.stringify(version)};\n`
      : `export class Daytona { constructor(c) { this.c = c; } }\nexport const Image = { fromDockerfile: (p) => ({ dockerfile: p }) };\nexport const VERSION = ${JSON.stringify(version)};\n`;
  writeFileSync(path.join(dir, "lib", "index.js"), body);
}

test("search roots: the node_modules tmax is installed in, then npm's prefix from the environment, then node's own", () => {
  const roots = sdkSearchRoots({ npm_config_prefix: "/opt/npm" }, "/usr/local/bin/node", "/home/u/.npm-global/lib/node_modules/tmax");
  assert.deepEqual(roots, ["/home/u/.npm-global/lib/node_modules", "/opt/npm/lib/node_modules", "/usr/local/lib/node_modules"]);
  // a checkout (not inside node_modules) and no npm environment: only node's global folder; duplicates collapse
  assert.deepEqual(sdkSearchRoots({}, "/usr/bin/node", "/work/tmax"), ["/usr/lib/node_modules"]);
  assert.deepEqual(sdkSearchRoots({ NPM_CONFIG_PREFIX: "/usr" }, "/usr/bin/node", "/usr/lib/node_modules/tmax"), ["/usr/lib/node_modules"]);
});

test("an SDK installed globally (CommonJS or ESM build) is loaded from the first root that has it", async () => {
  const empty = path.join(tmp, "empty", "lib", "node_modules");
  const cjs = path.join(tmp, "cjs", "lib", "node_modules");
  const esm = path.join(tmp, "esm", "lib", "node_modules");
  mkdirSync(empty, { recursive: true });
  fakeSdk(cjs, "commonjs", "0.218.0");
  fakeSdk(esm, "module", "0.219.0");
  const a = (await loadSdk([empty, cjs, esm])) as unknown as { VERSION: string; Image: { fromDockerfile(p: string): { dockerfile: string } } };
  assert.equal(a.VERSION, "0.218.0");
  assert.deepEqual(a.Image.fromDockerfile("/x/Dockerfile"), { dockerfile: "/x/Dockerfile" });
  const b = (await loadSdk([esm, cjs])) as unknown as { VERSION: string; Daytona: new (c: object) => { c: object } };
  assert.equal(b.VERSION, "0.219.0");
  assert.deepEqual(new b.Daytona({ apiKey: "k" }).c, { apiKey: "k" });
});

test("no SDK anywhere: the one-line message carries the global install hint; a wrong shape is named", async () => {
  assert.equal(SDK_INSTALL_FIX, "npm i -g @daytonaio/sdk");
  await assert.rejects(loadSdk([path.join(tmp, "nowhere")]), { message: MISSING_SDK_MESSAGE });
  const odd = path.join(tmp, "odd", "lib", "node_modules");
  mkdirSync(path.join(odd, "@daytonaio", "sdk"), { recursive: true });
  writeFileSync(path.join(odd, "@daytonaio", "sdk", "package.json"), JSON.stringify({ name: "@daytonaio/sdk", main: "index.js" }));
  writeFileSync(path.join(odd, "@daytonaio", "sdk", "index.js"), "exports.Something = 1;\n");
  await assert.rejects(loadSdk([odd]), /does not export Daytona and Image as expected/);
});
