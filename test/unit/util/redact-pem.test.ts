// PEM private key blocks are masked within bounds: a block ends at its END line, at the first line that is not
// key material, or after 256 lines; JSON around it stays valid; no input makes the match slow.
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { test } from "node:test";
import { redactAll } from "../../../src/util/redact.js";

const PEM = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString().trim();
const BODY = PEM.split("\n")[1]!;

test("a whole block is masked, END line included, in text and in JSON", () => {
  assert.equal(redactAll(`key:\n${PEM}\nnext line`), "key:\n***\nnext line");
  const json = redactAll(JSON.stringify({ out: `a ${PEM}\nb`, n: 1 }));
  assert.deepEqual(JSON.parse(json), { out: "a ***\nb", n: 1 });
});

test("an unterminated block ends at the first line that is not key material; JSON stays valid", () => {
  const open = PEM.split("\n").slice(0, -1).join("\n");
  const value = { out: `${open}\nAFTER-KEY ok\n${"x".repeat(100_000)}`, after: "kept" };
  const json = redactAll(JSON.stringify(value));
  const back = JSON.parse(json);
  assert.equal(back.after, "kept");
  assert.equal(back.out, `***\nAFTER-KEY ok\n${"x".repeat(100_000)}`);
  assert.ok(!json.includes(BODY));
  // a quote or an escaped quote right after key text: the escape is never split
  assert.deepEqual(JSON.parse(redactAll(JSON.stringify({ o: `${open}\nabc"q` }))), { o: '***"q' });
});

test("legacy encrypted PEM headers and a blank line are part of the block", () => {
  const legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B2C3D4E5F\n\nMIIEpAIBAAKCAQEA\nq83+/w==\n-----END RSA PRIVATE KEY-----";
  assert.equal(redactAll(`<${legacy}>`), "<***>");
});

test("bounded: at most 256 lines per block, and thousands of BEGIN lines stay fast", () => {
  const many = `-----BEGIN PRIVATE KEY-----${"\nQUFB".repeat(300)}\nEND`;
  assert.equal(redactAll(many), `***${"\nQUFB".repeat(44)}\nEND`);
  const hostile = `-----BEGIN PRIVATE KEY-----\n${"A".repeat(16000)}!`.repeat(1000);
  const t0 = Date.now();
  redactAll(hostile);
  assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
});
