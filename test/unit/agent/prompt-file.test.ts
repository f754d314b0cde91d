import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { formatObservation, REFERENCE_OBSERVATION_FALLBACKS } from "../../../src/agent/observation.js";
import { loadPromptFile, resolvePrompts } from "../../../src/agent/promptFile.js";
import { DEFAULT_PROMPTS, fillPlaceholder } from "../../../src/agent/prompts.js";
import { ROOT } from "../../support/env.js";

const FIXTURE = path.join(ROOT, "test/fixtures/prompts-authors-schema.yaml");
const dir = mkdtempSync(path.join(tmpdir(), "tmax-prompts-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const write = (name: string, text: string) => {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
};

test("a prompt file in the authors' schema: block scalars keep their final newline, {{task}} is replaced literally", () => {
  const p = loadPromptFile(FIXTURE);
  assert.equal(p.system, "You drive a Linux box through one tool, `bash`.\n\nThink first (a THOUGHT paragraph), then make exactly one `bash` call.\n");
  assert.equal(
    p.instance("  Make /app/x.txt say hi.\n\n"),
    "Task for you:\n\nMake /app/x.txt say hi.\n\nWhen finished, run `echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT` alone.\n" +
      "Jinja-looking text that is not the task stays as written: {{ task }} {% raw %}\n",
  );
  // the task text is inserted as is: braces, $, backslashes and a literal {{task}} inside it are not special
  assert.equal(fillPlaceholder("<{{task}}>", "task", "a $& {{task}} \\1"), "<a $& {{task}} \\1>");
  assert.equal(p.formatError("E"), "Format problem: E\n\nCall `bash` exactly once.\n");
  assert.equal(p.formatErrorText, "No usable bash call was found in your reply.");
  assert.deepEqual(p.observation, { maxChars: 300, headChars: 100, tailChars: 50, tooLongHint: "Too much output.\nNarrow it down.\n" });
  assert.equal(p.toolDescription, "Runs one bash command; cwd and exports persist.");
  assert.equal(p.commandDescription, "Shell text to run.");
  assert.deepEqual(p.source, { path: FIXTURE, sha256: createHash("sha256").update(readFileSync(FIXTURE)).digest("hex") });
});

test("--tool-description wins over the file; without a file our texts are used", () => {
  assert.equal(resolvePrompts({ prompts: FIXTURE, toolDescription: "X" }).toolDescription, "X");
  assert.equal(resolvePrompts({}), DEFAULT_PROMPTS);
  const ours = resolvePrompts({ toolDescription: "Y" });
  assert.equal(ours.toolDescription, "Y");
  assert.equal(ours.system, DEFAULT_PROMPTS.system);
  assert.equal(ours.source, undefined);
});

test("mini-swe-agent's layout: templates under agent:, format_error_template under model:, other keys ignored", () => {
  const file = write(
    "mini.yaml",
    "agent:\n  system_template: |-\n    S\n  instance_template: \"Do: {{task}}\"\n  step_limit: 250\nmodel:\n  format_error_template: 'Bad: {{error}}'\n  model_name: x\nenvironment:\n  timeout: 60\n",
  );
  const p = loadPromptFile(file);
  assert.equal(p.system, "S");
  assert.equal(p.instance("t"), "Do: t");
  assert.equal(p.formatError("e"), "Bad: e");
  assert.deepEqual(p.observation, REFERENCE_OBSERVATION_FALLBACKS);
  assert.equal(p.formatErrorText, undefined);
});

test("a prompt file without too_long_hint cuts long output with the reference's fallback hint, not ours", () => {
  // vanillux_solver._truncate_observation and swerl_vanillux_sandbox both read `.get("too_long_hint", "Output truncated.")`
  const file = write("nohint.yaml", "system_template: S\ninstance_template: '{{task}}'\nobservation:\n  max_chars: 10\n  head_chars: 3\n  tail_chars: 2\n");
  const p = loadPromptFile(file);
  assert.equal(p.observation.tooLongHint, "Output truncated.");
  const outcome = { stdout: "0123456789AB", stderr: "", exitCode: 0, timedOut: false };
  const expected = "Output truncated.\n\n---- HEAD (3 chars) ----\n012\n---- 7 chars elided ----\n---- TAIL (2 chars) ----\nAB\n\n(exit_code=0)";
  for (const profile of ["eval", "train"] as const) assert.equal(formatObservation(outcome, { profile, timeoutSec: 120, config: p.observation }), expected, profile);
});

test("a bad prompt file is one clear line naming the file and the key", () => {
  const cases: [string, RegExp][] = [
    ["system_template: S\n", /instance_template is missing$/],
    ["system_template: S\ninstance_template: 'no placeholder'\n", /instance_template has no \{\{task\}\}/],
    ["system_template: S\ninstance_template: '{{ task }}'\n", /instance_template has no \{\{task\}\}/],
    ["system_template: S\ninstance_template: '{{task}}'\nformat_error_template: 'x'\n", /format_error_template has no \{\{error\}\}/],
    ["system_template: S\ninstance_template: '{{task}}'\nobservation:\n  max_chars: many\n", /observation\.max_chars: /],
    ["system_template: S\ninstance_template: '{{task}}'\nobservation:\n  head_chars: -1\n", /observation\.head_chars: /],
    ["system_template: [1, 2]\ninstance_template: '{{task}}'\n", /system_template: /],
    ["system_template: S\nagent:\n  system_template: T\ninstance_template: '{{task}}'\n", /system_template and agent\.system_template are both set/],
    ["- a\n- b\n", /must be a YAML mapping/],
    ["system_template: 'unterminated\n", /not valid YAML: /],
  ];
  for (const [i, [text, expected]] of cases.entries()) {
    const file = write(`bad${i}.yaml`, text);
    assert.throws(() => loadPromptFile(file), (e: Error) => {
      assert.match(e.message, expected);
      assert.ok(e.message.startsWith(`prompt file ${file}: `), e.message);
      assert.ok(!e.message.includes("\n"), `one line: ${JSON.stringify(e.message)}`);
      return true;
    });
  }
  assert.throws(() => loadPromptFile(path.join(dir, "missing.yaml")), /prompt file .*missing\.yaml: no such file$/);
});

test("YAML 1.1 as PyYAML reads it: 10_000 is an integer", () => {
  const file = write("y11.yaml", "system_template: S\ninstance_template: '{{task}}'\nobservation:\n  max_chars: 10_000\n");
  assert.equal(loadPromptFile(file).observation.maxChars, 10000);
});
