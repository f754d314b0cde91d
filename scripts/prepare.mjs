// npm's `prepare` step (`npm install` in a checkout, `npm pack`, installs from git): compiles dist/ with tsc.
// Not `prepack`: for git dependencies npm (pacote) runs only `prepare`.
// Plain JavaScript, because nothing is compiled yet when it runs.
//
// npm installs a git dependency's devDependencies before its prepare script, except under `npm i -g`: there the
// nested install inherits the global flag and the clone gets no node_modules (npm/cli#8440; working around it
// from here races with npm's own install into the global folder). That case gets one line with the route that
// works: pack from git (not global, so npm prepares it properly), then install the tarball globally.
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(path.join(root, "package.json"));

let tsc;
try {
  tsc = require.resolve("typescript/bin/tsc");
} catch {
  console.error(
    "tmax: cannot build: typescript is not installed here. `npm i -g` from git hits npm/cli#8440; instead run " +
      "`npm pack github:tmax-project/tmax` and then `npm i -g ./tmax-<version>.tgz` (or clone, `npm ci`, `npm i -g .`)",
  );
  process.exit(1);
}
const r = spawnSync(process.execPath, [tsc, "-p", path.join(root, "tsconfig.json")], { cwd: root, stdio: "inherit" });
process.exit(r.status ?? 1);
