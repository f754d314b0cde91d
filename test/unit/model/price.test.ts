// Cost from token usage and a price the user gives (USD per million tokens); no price, no cost.
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { costUsd, loadPriceTable, priceFromFlags } from "../../../src/model/price.js";

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} ≈ ${b}`);

test("cost: uncached prompt at input, cached prompt at cached_input, completion at output", () => {
  // 1M prompt tokens at $2, 0.5M completion at $8
  close(costUsd({ promptTokens: 1_000_000, completionTokens: 500_000 }, { input: 2, output: 8 }), 6);
  // 12,345 prompt (2,000 of them cached) and 678 completion tokens
  close(costUsd({ promptTokens: 12_345, completionTokens: 678, cachedTokens: 2_000 }, { input: 3, output: 15, cached_input: 0.3 }), (10_345 * 3 + 2_000 * 0.3 + 678 * 15) / 1e6);
  // cached tokens without a cached price cost the input price
  close(costUsd({ promptTokens: 100, completionTokens: 0, cachedTokens: 40 }, { input: 1, output: 1 }), 100 / 1e6);
  // a server reporting more cached than prompt tokens is capped at the prompt
  close(costUsd({ promptTokens: 10, completionTokens: 0, cachedTokens: 50 }, { input: 1, output: 1, cached_input: 0 }), 0);
  assert.equal(costUsd({ promptTokens: 0, completionTokens: 0 }, { input: 5, output: 5 }), 0);
});

test("prices from flags: both halves needed, flags over the table, an unknown model has none", async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-price-"));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  const yaml = path.join(dir, "prices.yaml");
  await fs.writeFile(yaml, "gpt-4.1:\n  input: 2\n  output: 8\n  cached_input: 0.5\nqwen3-8b: {input: 0.05, output: 0.2}\n");
  const json = path.join(dir, "prices.json");
  await fs.writeFile(json, JSON.stringify({ "gpt-4.1": { input: 2, output: 8 } }));

  assert.deepEqual(priceFromFlags({ priceTable: yaml }, "gpt-4.1"), { input: 2, output: 8, cached_input: 0.5 });
  assert.deepEqual(priceFromFlags({ priceTable: json }, "gpt-4.1"), { input: 2, output: 8 });
  assert.equal(priceFromFlags({ priceTable: yaml }, "some-other-model"), undefined, "never a guessed price");
  assert.equal(priceFromFlags({}, "gpt-4.1"), undefined);
  assert.deepEqual(priceFromFlags({ priceTable: yaml, priceInput: 1, priceOutput: 2 }, "gpt-4.1"), { input: 1, output: 2 });
  assert.deepEqual(priceFromFlags({ priceInput: 1, priceOutput: 2, priceCachedInput: 0.1 }, undefined), { input: 1, output: 2, cached_input: 0.1 });
  assert.throws(() => priceFromFlags({ priceInput: 1 }, "m"), /--price-input and --price-output go together/);
  assert.throws(() => priceFromFlags({ priceInput: -1, priceOutput: 2 }, "m"), /finite numbers ≥ 0/);
  assert.throws(() => priceFromFlags({ priceInput: Number.NaN, priceOutput: 2 }, "m"), /finite numbers ≥ 0/);

  const bad = path.join(dir, "bad.yaml");
  await fs.writeFile(bad, "gpt-4.1: {input: two, output: 8}\n");
  assert.throws(() => loadPriceTable(bad), (e: Error) => /price table .*bad\.yaml at \[gpt-4\.1\.input\]/.test(e.message) && !e.message.includes("\n"));
  await fs.writeFile(bad, "gpt-4.1: {input: 1, output: 8, extra: 3}\n");
  assert.throws(() => loadPriceTable(bad), /price table/);
  assert.throws(() => loadPriceTable(path.join(dir, "missing.json")), /cannot read price table/);
});
