// The resident executor's contract: every process attribute a command sees is what an exec per command gives it
// (Harbor runs one exec per command). One probe, run through both paths in the same image, compared field by field.
// Measured before: the executor ran every command with umask 077 (files 0600, dirs 0700), so a service running as
// another user (nginx as www-data) could not read what the agent wrote, and the task failed where Harbor passes.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { connectEngine, dockerBackend, TMAX_JOB_LABEL, type Sandbox } from "../../../../src/sandbox/index.js";
import { BASE_IMAGE, ENGINE_SKIP } from "../../../support/env.js";

const docker = connectEngine();
const JOB = `executor-contract-${process.pid}`;

/** Prints one `name=value` line per attribute of the probe's own process (bash reads /proc/$$: its state as started). */
const PROBE = String.raw`
fds=(/proc/$$/fd/*)
s=$(sed "s/.*) //" /proc/$$/stat); read -r _ ppid pgrp sid _ <<< "$s"
echo "umask=$(umask)"
echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"
echo "cwd=$(pwd -P)"
echo "stdin=$(readlink /proc/$$/fd/0)"
echo "fds=$(for f in "$${'{'}fds[@]}"; do printf '%s:%s ' "$${'{'}f##*/}" "$(readlink "$f" | sed 's/[0-9]//g')"; done)"
while read -r k v; do case $k in SigIgn:|SigBlk:|NoNewPrivs:|CapEff:|CapBnd:) echo "$k$v" ;; esac; done < /proc/$$/status
echo "pgid=$([ "$pgrp" = $$ ] && echo self || { [ "$pgrp" = "$ppid" ] && echo parent || echo other; })"
echo "sid=$([ "$sid" = "$pgrp" ] && echo pgid || echo other)"
echo "parent=$(tr '\0' '\n' < /proc/$ppid/cmdline 2>/dev/null | head -1)"
echo "nice=$(cut -d' ' -f17 <<< "$s")"
echo "oom=$(< /proc/$$/oom_score_adj)"
ulimit -a | sed 's/^/ulimit /'
tr '\0' '\n' < /proc/$$/environ | sort | sed 's/^/env /'
`;

async function probe(sb: Sandbox, opts: { timeoutSec?: number; env?: Record<string, string>; cwd?: string }): Promise<Map<string, string>> {
  const r = await sb.exec(["/bin/bash", "-c", PROBE], opts);
  assert.equal(r.exitCode, 0, r.stderr);
  const fields = new Map<string, string>();
  for (const line of r.stdout.trimEnd().split("\n")) {
    const key = line.startsWith("ulimit ") || line.startsWith("env ") ? line.slice(0, line.includes("=") && line.startsWith("env ") ? line.indexOf("=") : line.lastIndexOf(" ")) : line.split("=")[0];
    fields.set(key, line);
  }
  return fields;
}

describe("the resident executor's process attributes equal an exec's", { skip: ENGINE_SKIP }, () => {
  for (const [name, opts] of [
    ["with a timeout", { timeoutSec: 60 }],
    ["without a timeout, with env and cwd", { env: { FROM_EXEC: "x y", HOME: "/tmp" }, cwd: "/tmp" }],
  ] as const) {
    test(`${name}: umask, limits, environment, cwd, stdin, fds, signals, process group and session`, async (t) => {
      const sandboxes: Record<string, Sandbox> = {};
      for (const mode of ["exec", "resident"] as const) {
        sandboxes[mode] = await dockerBackend({ docker, executor: mode }).create({ image: BASE_IMAGE, env: { FROM_SPEC: "spec" }, labels: { [TMAX_JOB_LABEL]: JOB } });
        t.after(() => sandboxes[mode]!.remove());
      }
      const viaExec = await probe(sandboxes.exec!, opts);
      const viaResident = await probe(sandboxes.resident!, opts);
      // the helper really is in use on the resident side
      const ps = await sandboxes.resident!.exec(["/bin/bash", "-c", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '"]);
      assert.match(ps.stdout, /tmax-executor/);
      assert.equal(viaExec.get("umask"), "umask=0022");
      // every field, compared one by one (all differences listed at once)
      // each container has its own HOSTNAME; without a timeout an exec's process has no parent in the container
      // (ppid 0, the runtime is outside) while the executor's is the helper: the one attribute that cannot match
      const skip = new Set(["env HOSTNAME", ...(opts.timeoutSec ? [] : ["parent"])]);
      const keys = [...new Set([...viaExec.keys(), ...viaResident.keys()])].filter((k) => !skip.has(k));
      assert.ok(keys.length > 30, `probe printed only ${keys.length} fields`);
      const differ = keys.filter((k) => viaResident.get(k) !== viaExec.get(k));
      assert.deepEqual(differ.map((k) => [k, viaResident.get(k) ?? "(none)"]), differ.map((k) => [k, viaExec.get(k) ?? "(none)"]), "resident executor (actual) vs exec (expected)");
      // and what a service running as another user needs: files 0644, dirs 0755
      const made = await sandboxes.resident!.exec(["/bin/bash", "-c", "mkdir /tmp/d && echo x > /tmp/d/f && stat -c %a /tmp/d /tmp/d/f"]);
      assert.equal(made.stdout, "755\n644\n");
    });
  }
});
