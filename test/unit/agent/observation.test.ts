import assert from "node:assert/strict";
import { test } from "node:test";
import {
  commandOutput,
  DEFAULT_OBSERVATION,
  formatObservation,
  SUBMIT_MARKER,
  TOO_LONG_HINT,
  truncateOutput,
  type CommandOutcome,
  type ObservationConfig,
} from "../../../src/agent/observation.js";
import { codePointLength, pyRstrip, pyStrip } from "../../../src/agent/pytext.js";
import { decodeUtf8 } from "../../../src/sandbox/bytes/execOutput.js";

const outcome = (stdout: string, stderr = "", exitCode = 0, timedOut = false): CommandOutcome => ({ stdout, stderr, exitCode, timedOut });
const evalObs = (o: CommandOutcome, config?: ObservationConfig) => formatObservation(o, { profile: "eval", timeoutSec: 120, ...(config ? { config } : {}) });
const trainObs = (o: CommandOutcome, config?: ObservationConfig) => formatObservation(o, { profile: "train", timeoutSec: 120, ...(config ? { config } : {}) });
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

test("both profiles: stdout, a newline, stderr; stderr alone has no leading newline", () => {
  assert.equal(evalObs(outcome("out", "err", 1)), "out\nerr\n\n(exit_code=1)");
  assert.equal(trainObs(outcome("out", "err", 1)), "out\nerr\n\n(exit_code=1)");
  assert.equal(evalObs(outcome("", "bash: nope: command not found\n", 127)), "bash: nope: command not found\n\n(exit_code=127)");
  assert.equal(trainObs(outcome("", "bash: nope: command not found\n", 127)), "bash: nope: command not found\n\n\n(exit_code=127)");
});

test("trailing whitespace: eval strips it, train keeps it", () => {
  assert.equal(evalObs(outcome("hello  \n\t\n")), "hello\n\n(exit_code=0)");
  assert.equal(trainObs(outcome("hello  \n\t\n")), "hello  \n\t\n\n\n(exit_code=0)");
  assert.equal(evalObs(outcome("out\n", "err\n", 2)), "out\n\nerr\n\n(exit_code=2)");
  assert.equal(trainObs(outcome("out\n", "err\n", 2)), "out\n\nerr\n\n\n(exit_code=2)");
  // leading whitespace is never touched
  assert.equal(evalObs(outcome("  \n x")), "  \n x\n\n(exit_code=0)");
});

test("eval strips exactly Python's whitespace set, not JavaScript's", () => {
  assert.equal(evalObs(outcome("a\x1c\x1d\x1e\x1f\x85\xa0\u2028\u3000\v\f\r")), "a\n\n(exit_code=0)");
  // U+FEFF is whitespace to String.prototype.trimEnd but not to Python's rstrip; U+200B is neither
  assert.equal(evalObs(outcome("a\ufeff")), "a\ufeff\n\n(exit_code=0)");
  assert.equal(evalObs(outcome("a\u200b")), "a\u200b\n\n(exit_code=0)");
  assert.equal(pyRstrip("x\u180e"), "x\u180e");
  assert.equal(pyStrip("\u3000 task\n\n"), "task");
});

test("empty and whitespace-only output", () => {
  assert.equal(evalObs(outcome("")), "(no output)\n\n(exit_code=0)");
  assert.equal(trainObs(outcome("")), "(no output)\n\n(exit_code=0)");
  assert.equal(evalObs(outcome("\n\n  \n", " ")), "(no output)\n\n(exit_code=0)");
  assert.equal(trainObs(outcome("\n\n  \n")), "\n\n  \n\n\n(exit_code=0)");
  assert.equal(trainObs(outcome("", "\n", 1)), "\n\n\n(exit_code=1)");
});

test("timeout: eval shows only the partial output, train puts the notice in front of stderr", () => {
  assert.equal(evalObs(outcome("partial\n", "", 124, true)), "partial\n\n(exit_code=124)");
  assert.equal(evalObs(outcome("", "", 124, true)), "(no output)\n\n(exit_code=124)");
  assert.equal(trainObs(outcome("partial\n", "", 124, true)), "partial\n\nCommand timed out after 120s.\n\n\n(exit_code=124)");
  assert.equal(trainObs(outcome("", "", 124, true)), "Command timed out after 120s.\n\n\n(exit_code=124)");
  assert.equal(trainObs(outcome("a", "warn\n", 124, true)), "a\nCommand timed out after 120s.\nwarn\n\n\n(exit_code=124)");
  assert.equal(formatObservation(outcome("", "", 124, true), { profile: "train", timeoutSec: 30 }), "Command timed out after 30s.\n\n\n(exit_code=124)");
  // open-instruct keys the notice on the exit code, as timeout(1) reports it: an inner `timeout 5 …` also gets it,
  // and a command KILLed after the grace period (137) does not
  assert.equal(trainObs(outcome("", "", 124, false)), "Command timed out after 120s.\n\n\n(exit_code=124)");
  assert.equal(trainObs(outcome("x", "", 137, true)), "x\n\n(exit_code=137)");
  // the submit marker is looked for in this text in train
  assert.equal(commandOutput(outcome(`${SUBMIT_MARKER}\n`, ""), { profile: "train", timeoutSec: 120 }), `${SUBMIT_MARKER}\n`);
});

test("exactly max_chars code points are kept; one more is cut to head, elided count and tail", () => {
  for (const obs of [evalObs, trainObs]) {
    const exact = "a".repeat(10_000);
    assert.equal(obs(outcome(exact)), `${exact}\n\n(exit_code=0)`);
    const over = "b".repeat(5_000) + "X" + "c".repeat(5_000);
    assert.equal(
      obs(outcome(over)),
      `${TOO_LONG_HINT}\n\n---- HEAD (5000 chars) ----\n${"b".repeat(5_000)}\n---- 1 chars elided ----\n---- TAIL (5000 chars) ----\n${"c".repeat(5_000)}\n\n(exit_code=0)`,
    );
  }
});

test("the cut is measured after eval's strip and before train's suffix", () => {
  const text = "x".repeat(10_000) + "\n".repeat(50);
  assert.equal(evalObs(outcome(text)), `${"x".repeat(10_000)}\n\n(exit_code=0)`);
  const train = trainObs(outcome(text));
  assert.ok(train.includes("---- 50 chars elided ----\n"));
  assert.ok(train.endsWith(`${"x".repeat(4_950)}${"\n".repeat(50)}\n\n(exit_code=0)`));
});

test("a prompt file's hint (a YAML block ending in a newline) is followed by two more", () => {
  const config = { maxChars: 10, headChars: 3, tailChars: 2, tooLongHint: "Too long.\nNarrow it.\n" };
  assert.equal(evalObs(outcome("0123456789AB"), config), "Too long.\nNarrow it.\n\n\n---- HEAD (3 chars) ----\n012\n---- 7 chars elided ----\n---- TAIL (2 chars) ----\nAB\n\n(exit_code=0)");
});

test("characters are code points: astral characters count once and a cut never splits a pair", () => {
  // 6,000 emoji are 12,000 UTF-16 units but 6,000 characters: under the limit, as in Python
  const emoji = "😀".repeat(6_000);
  assert.equal(evalObs(outcome(emoji)), `${emoji}\n\n(exit_code=0)`);
  // one ASCII letter shifts every pair boundary off the unit count of the cut
  const mixed = "a" + "😀".repeat(10_000) + "z";
  const text = truncateOutput(mixed);
  assert.ok(!loneSurrogate.test(text), "no lone surrogate");
  assert.ok(text.includes(`---- HEAD (5000 chars) ----\na${"😀".repeat(4_999)}\n---- 2 chars elided ----\n---- TAIL (5000 chars) ----\n${"😀".repeat(4_999)}z`));
  assert.equal(codePointLength(mixed), 10_002);
});

test("Python's s[-0:] is the whole string: tail_chars 0 shows all of it, as the reference does", () => {
  const config = { maxChars: 4, headChars: 2, tailChars: 0, tooLongHint: "H" };
  assert.equal(truncateOutput("abcdef", config), "H\n\n---- HEAD (2 chars) ----\nab\n---- 4 chars elided ----\n---- TAIL (0 chars) ----\nabcdef");
});

test("a 1 MiB flood shows head, elided count and tail", () => {
  const raw = Array.from({ length: 1 << 20 }, (_, i) => String.fromCharCode(97 + (i % 26))).join("");
  const text = truncateOutput(raw);
  assert.equal(
    text,
    `${TOO_LONG_HINT}\n\n---- HEAD (5000 chars) ----\n${raw.slice(0, 5000)}\n---- ${(1 << 20) - 10_000} chars elided ----\n---- TAIL (5000 chars) ----\n${raw.slice(-5000)}`,
  );
  assert.equal(DEFAULT_OBSERVATION.maxChars, 10_000);
});

test("invalid UTF-8 from the sandbox decodes as Python's errors='replace' does (one U+FFFD per maximal invalid subpart)", () => {
  // expected strings produced by CPython 3.11: bytes(...).decode("utf-8", "replace")
  const cases: [number[], string][] = [
    [[0x61, 0xff, 0x62], "a\ufffdb"],
    [[0xe2, 0x82], "\ufffd"],
    [[0xe2, 0x82, 0x61], "\ufffda"],
    [[0xf0, 0x9f, 0x98], "\ufffd"],
    [[0xed, 0xa0, 0x80, 0x78], "\ufffd\ufffd\ufffdx"],
    [[0xc0, 0xaf, 0x7a], "\ufffd\ufffdz"],
    [[0xf4, 0x90, 0x80, 0x80], "\ufffd\ufffd\ufffd\ufffd"],
    [[0xe0, 0x80, 0x80], "\ufffd\ufffd\ufffd"],
    [[0xf0, 0x9f, 0x98, 0x80, 0x80], "😀\ufffd"],
  ];
  for (const [bytes, expected] of cases) assert.equal(decodeUtf8(new Uint8Array(bytes)), expected, JSON.stringify(bytes));
  assert.equal(evalObs(outcome(decodeUtf8(new Uint8Array([0x6f, 0x6b, 0xff, 0x0a])))), "ok\ufffd\n\n(exit_code=0)");
  assert.equal(trainObs(outcome(decodeUtf8(new Uint8Array([0x6f, 0x6b, 0xff, 0x0a])))), "ok\ufffd\n\n\n(exit_code=0)");
});

test("the submit marker is the contract's token", () => {
  assert.equal(SUBMIT_MARKER, "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT");
});
