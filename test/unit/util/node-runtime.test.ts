// The Node.js runtime check of `tmax doctor`: versions, end-of-life dates, and the line doctor prints.
import { spawnSync } from "node:child_process";
import assert from "node:assert/strict";
import path from "node:path";
import { describe, test } from "node:test";
import { describeNodeRuntime, nodeRuntimeStatus, TESTED_NODE_MAJORS } from "../../../src/util/nodeRuntime.js";
import { ROOT } from "../../support/env.js";

describe("Node.js runtime status", () => {
  test("20 is end of life from 2026-04-30 on, not the day before", () => {
    assert.equal(nodeRuntimeStatus("v20.20.2", new Date("2026-04-29T23:59:59Z")).endOfLifeReached, false);
    const s = nodeRuntimeStatus("v20.20.2", new Date("2026-04-30T00:00:00Z"));
    assert.deepEqual(s, { version: "v20.20.2", major: 20, endOfLife: "2026-04-30", endOfLifeReached: true, tested: true });
    const line = describeNodeRuntime(s);
    assert.equal(line.ok, "warn");
    assert.equal(line.what, "Node.js v20.20.2: end of life since 2026-04-30 (no more security fixes)");
    assert.match(line.fix ?? "", /install Node\.js 24 LTS/);
  });

  test("24 and 22 are supported on 2026-12-03; an odd, untested major warns", () => {
    const now = new Date("2026-12-03T12:00:00Z");
    assert.deepEqual(describeNodeRuntime(nodeRuntimeStatus("v24.22.3", now)), { ok: true, what: "Node.js v24.22.3 (supported until 2028-04-30)" });
    assert.equal(describeNodeRuntime(nodeRuntimeStatus("v22.23.5", now)).ok, true);
    const odd = describeNodeRuntime(nodeRuntimeStatus("v25.1.0", now));
    assert.equal(odd.ok, "warn");
    assert.match(odd.what, /end of life since 2026-06-01/);
    const future = describeNodeRuntime(nodeRuntimeStatus("v28.0.0", now));
    assert.equal(future.ok, "warn");
    assert.match(future.what, /not a version tmax is tested on \(24, 22, 20\)/);
    assert.deepEqual([...TESTED_NODE_MAJORS], [24, 22, 20]);
  });

  test("tmax doctor prints the running Node version first", () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", path.join(ROOT, "src/cli/main.ts"), "doctor", "--skip-model", "--skip-sandbox"], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: "1" },
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    const first = r.stdout.split("\n")[0];
    assert.ok(first.includes(`Node.js ${process.version}`), first);
  });
});
