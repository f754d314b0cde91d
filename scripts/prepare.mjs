// npm's `prepare` step (`npm install` in a checkout, `npm pack`, and installs from git): compiles dist/ with tsc.
// Plain JavaScript, because nothing is compiled yet when it runs.
//
// npm installs a git dependency's devDependencies before running its prepare script, except under `npm i -g`:
// there the nested install inherits the global flag and leaves the clone without node_modules (npm/cli#8440),
// so `tsc` is missing. In that case the devDependencies are installed here, into the clone itself, first. That
// nested install also links the clone into the global folder; the outer install would then write the package
// through that link into the clone, which npm deletes afterwards, so the link is removed once dist/ is built.
import { spawnSync } from "node:child_process";
import { lstatSync, realpathSync, unlinkSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const require = createRequire(path.join(root, "package.json"));

function tscPath() {
  try {
    return require.resolve("typescript/bin/tsc");
  } catch {
    return undefined;
  }
}

function run(cmd, args, env = process.env) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit", env });
  if (r.status !== 0) {
    console.error(`tmax prepare: ${path.basename(cmd)} ${args.slice(0, 2).join(" ")} failed (${r.status ?? r.signal})`);
    process.exit(r.status || 1);
  }
}

let tsc = tscPath();
if (!tsc) {
  const env = { ...process.env };
  for (const key of Object.keys(env)) if (/^npm_config_(global|prefix|location)$/i.test(key)) delete env[key];
  const npm = process.env.npm_execpath;
  const [cmd, pre] = npm && /\.[cm]?js$/.test(npm) ? [process.execPath, [npm]] : ["npm", []];
  console.error("tmax prepare: typescript not installed here (a global install from git); installing the build tools locally");
  run(cmd, [...pre, "install", "--include=dev", "--ignore-scripts", "--prefer-offline", "--no-save", "--no-audit", "--no-fund", "--global=false"], env);
  tsc = tscPath();
  if (!tsc) {
    console.error("tmax prepare: typescript is still missing after installing the devDependencies");
    process.exit(1);
  }
}
run(process.execPath, [tsc, "-p", path.join(root, "tsconfig.json")]);

if (process.env.npm_config_global === "true") {
  const name = require("./package.json").name;
  const prefixes = [process.env.npm_config_prefix, path.dirname(path.dirname(process.execPath))].filter(Boolean);
  for (const prefix of new Set(prefixes)) {
    const link = path.join(prefix, "lib", "node_modules", name);
    try {
      if (lstatSync(link).isSymbolicLink() && realpathSync(link) === realpathSync(root)) unlinkSync(link);
    } catch {
      // no such link: nothing to undo
    }
  }
}
