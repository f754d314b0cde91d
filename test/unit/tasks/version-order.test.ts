// The version `name` / `name@latest` resolves to, as Harbor's registry client picks it (resolve_version):
// "head" first, then the highest PEP 440 version (pre-releases below their release), then plain string order.
// Expected values follow PEP 440's ordering (dev < a < b < rc < release < post; epochs; local versions).
import assert from "node:assert/strict";
import { test } from "node:test";
import { findDataset, latestVersion, type Registry } from "../../../src/tasks/registry.js";

const TABLE: [string[], string][] = [
  [["2.0rc1", "2.0"], "2.0"],
  [["2.0", "2.0rc1"], "2.0"],
  [["2.0.0rc1", "2.0"], "2.0"],
  [["2.0", "2.0RC1"], "2.0"],
  [["1.9", "2.0rc1"], "2.0rc1"], // a pre-release is still picked when it is the highest
  [["2.0a1", "2.0b1", "2.0rc1"], "2.0rc1"],
  [["2.0.dev1", "2.0a1"], "2.0a1"],
  [["2.0rc2", "2.0rc10"], "2.0rc10"],
  [["2.0", "2.0.post1"], "2.0.post1"],
  [["2.0.post1", "2.1.dev0"], "2.1.dev0"],
  [["9.1", "10.0", "2.0"], "10.0"],
  [["1.10", "1.9"], "1.10"],
  [["1.0", "1.0.0"], "1.0"], // equal versions: the registry's first
  [["1.0.0", "1.0"], "1.0.0"],
  [["v2.0", "1.5"], "v2.0"],
  [["1!1.0", "2.0"], "1!1.0"], // epochs outrank everything
  [["2.0", "2.0+local.1"], "2.0+local.1"],
  [["head", "3.0"], "head"],
  [["nightly", "2.0", "1.0"], "2.0"], // not PEP 440: left out while some version is
  [["beta", "alpha", "gamma"], "gamma"], // none is: plain string order
  [["2.0"], "2.0"],
];

test("latest: the version Harbor picks, for each list", () => {
  const wrong = TABLE.map(([versions, want]) => [versions, latestVersion(versions), want] as const).filter(([, got, want]) => got !== want);
  assert.deepEqual(wrong, []);
  assert.equal(latestVersion([]), undefined);
});

test("findDataset: no version, `latest` and `head` resolve through the same rule", () => {
  const reg: Registry = {
    source: "test",
    baseDir: "/",
    datasets: ["1.0", "2.0rc1", "2.0", "2.0rc2"].map((version) => ({ name: "tb", version, description: "", tasks: [] })),
  };
  assert.equal(findDataset(reg, { name: "tb" }).version, "2.0");
  assert.equal(findDataset(reg, { name: "tb", version: "latest" }).version, "2.0");
  assert.equal(findDataset(reg, { name: "tb", version: "2.0rc1" }).version, "2.0rc1");
});
