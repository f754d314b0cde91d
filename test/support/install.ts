// tmax as a user gets it: the checkout's files copied to a temp dir (what a git clone holds: no dist/, no
// node_modules of its own), `npm pack` there (the prepare script compiles dist/), then `npm install -g --prefix`
// of the tarball into a temp prefix, dependencies from the npm cache or registry. Used by the unit test of the
// package and the engine test that runs the README's main command with the installed binary.
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, symlinkSync } from "node:fs";
import path from "node:path";
import { ROOT } from "./env.js";

/** Top-level names of a checkout that a clone does not have (build output, installs, run output). */
const NOT_IN_A_CLONE = new Set(["node_modules", "dist", ".git", ".node-versions", "jobs", "runs", "rollouts", "test-artifacts"]);

export interface Installed {
  tarball: string;
  /** The installed package folder: <prefix>/lib/node_modules/tmax */
  pkgDir: string;
  bin: string;
  prefix: string;
  /** The file list `npm pack` reported. */
  files: string[];
}

function run(cmd: string, args: string[], cwd: string, timeoutMs: number): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout: timeoutMs, env: { ...process.env, npm_config_update_notifier: "false", npm_config_fund: "false", npm_config_audit: "false" } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status ?? r.signal}): ${(r.stderr || r.stdout).slice(-2000)}`);
  return r.stdout;
}

/** Packs the checkout as a clone would be packed and installs the tarball globally under `tmp`/prefix. */
export function packAndInstall(tmp: string): Installed {
  const clone = path.join(tmp, "clone");
  mkdirSync(clone, { recursive: true });
  for (const name of readdirSync(ROOT)) {
    if (NOT_IN_A_CLONE.has(name)) continue;
    cpSync(path.join(ROOT, name), path.join(clone, name), { recursive: true, filter: (src) => !src.includes(`${path.sep}__pycache__`) });
  }
  // the clone's `npm ci` would install the same tree; linking the checkout's keeps the test offline and fast
  symlinkSync(path.join(ROOT, "node_modules"), path.join(clone, "node_modules"), "dir");
  const packDir = path.join(tmp, "pack");
  mkdirSync(packDir);
  const report = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", packDir], clone, 900_000)) as { filename: string; files: { path: string }[] }[];
  const tarball = path.join(packDir, report[0]!.filename);
  const prefix = path.join(tmp, "prefix");
  run("npm", ["install", "-g", "--prefix", prefix, "--prefer-offline", tarball], tmp, 900_000);
  return { tarball, prefix, pkgDir: path.join(prefix, "lib", "node_modules", "tmax"), bin: path.join(prefix, "bin", "tmax"), files: report[0]!.files.map((f) => f.path) };
}
