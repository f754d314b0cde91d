import { test } from "node:test";
import assert from "node:assert/strict";
import { parseQwenXmlToolCalls, renderQwenXmlToolCall, splitThinking } from "../../../src/model/qwenXml.js";

const call = (command: string, name = "bash") =>
  `<tool_call>\n<function=${name}>\n<parameter=command>\n${command}\n</parameter>\n</function>\n</tool_call>`;

test("renders the canonical Qwen XML block", () => {
  assert.equal(
    renderQwenXmlToolCall("bash", { command: "ls -la /app" }),
    "<tool_call>\n<function=bash>\n<parameter=command>\nls -la /app\n</parameter>\n</function>\n</tool_call>",
  );
  assert.equal(
    renderQwenXmlToolCall("f", { a: "x", n: 3 }),
    "<tool_call>\n<function=f>\n<parameter=a>\nx\n</parameter>\n<parameter=n>\n3\n</parameter>\n</function>\n</tool_call>",
  );
});

test("parses one call exactly", () => {
  const r = parseQwenXmlToolCalls(call("ls -la /app"));
  assert.deepEqual(r, {
    calls: [{ id: "call_xml_1", name: "bash", arguments: { command: "ls -la /app" }, source: "xml" }],
    errors: [],
    textBefore: "",
  });
});

test("round-trips values with leading/trailing newlines and blank lines: exactly one newline stripped each side", () => {
  for (const command of ["ls", "\nls", "ls\n", "\n\nls\n\n", "a\n\nb", "", " spaced "]) {
    const r = parseQwenXmlToolCalls(renderQwenXmlToolCall("bash", { command }));
    assert.deepEqual(r.calls[0]?.arguments, { command }, JSON.stringify(command));
  }
  // Without the template's newlines, nothing is stripped.
  const tight = parseQwenXmlToolCalls("<tool_call><function=bash><parameter=command>pwd</parameter></function></tool_call>");
  assert.deepEqual(tight.calls[0]?.arguments, { command: "pwd" });
});

test("thinking and text before the call; textBefore is the answer text only", () => {
  const content = `The user wants files.\nLet me look.</think>\n\nTHOUGHT: list the directory.\n\n${call("ls /app")}`;
  const r = parseQwenXmlToolCalls(content);
  assert.equal(r.calls.length, 1);
  assert.equal(r.calls[0]!.arguments.command, "ls /app");
  assert.equal(r.textBefore, "THOUGHT: list the directory.");
  assert.deepEqual(r.errors, []);
});

test("tool calls inside the thinking are ignored (split at the last </think>)", () => {
  const content = `<think>\nmaybe ${call("rm -rf /")}\nno.</think>\nfirst draft</think>\n\n${call("echo ok")}`;
  const r = parseQwenXmlToolCalls(content);
  assert.deepEqual(
    r.calls.map((c) => c.arguments.command),
    ["echo ok"],
  );
  assert.equal(r.textBefore, "");
  const onlyInThinking = parseQwenXmlToolCalls(`${call("ls")}</think>\n\nI am done.`);
  assert.deepEqual(onlyInThinking.calls, []);
  assert.deepEqual(onlyInThinking.errors, []);
  assert.equal(onlyInThinking.textBefore, "I am done.");
});

test("several calls with stray text between and after get sequential ids", () => {
  const content = `a\n${call("one")}\nand then\n${call("two")}\n\ntrailing words`;
  const r = parseQwenXmlToolCalls(content);
  assert.deepEqual(
    r.calls.map((c) => [c.id, c.arguments.command]),
    [
      ["call_xml_1", "one"],
      ["call_xml_2", "two"],
    ],
  );
  assert.equal(r.textBefore, "a");
  assert.deepEqual(r.errors, []);
});

test("missing final </tool_call> (and </function>) at the end of the text is tolerated", () => {
  const noCallClose = "<tool_call>\n<function=bash>\n<parameter=command>\nls\n</parameter>\n</function>\n";
  assert.deepEqual(parseQwenXmlToolCalls(noCallClose).calls[0]?.arguments, { command: "ls" });
  const noFunctionClose = "<tool_call>\n<function=bash>\n<parameter=command>\nls\n</parameter>\n";
  assert.deepEqual(parseQwenXmlToolCalls(noFunctionClose).calls[0]?.arguments, { command: "ls" });
  const r = parseQwenXmlToolCalls(noFunctionClose);
  assert.deepEqual(r.errors, []);
});

test("values span lines and contain '<', '</div>' and even '</parameter>' not followed by a tag", () => {
  const command = [
    "cat > /app/index.html <<'EOF'",
    "<div class=\"a\">",
    "  <p>if a < b && c > d</p>",
    "</div>",
    "literal </parameter> inside text",
    "EOF",
    "python3 -c 'print(1 < 2)'",
  ].join("\n");
  const r = parseQwenXmlToolCalls(call(command));
  assert.deepEqual(r.errors, []);
  assert.equal(r.calls[0]!.arguments.command, command);
});

test("JSON-looking command values stay strings", () => {
  const r = parseQwenXmlToolCalls(call('{"a": 1}'));
  assert.equal(r.calls[0]!.arguments.command, '{"a": 1}');
  assert.equal(parseQwenXmlToolCalls(call("42")).calls[0]!.arguments.command, "42");
});

test("several parameters and another tool name are parsed as written", () => {
  const content =
    "<tool_call>\n<function=edit>\n<parameter=path>\n/app/x\n</parameter>\n<parameter=text>\nhi\n</parameter>\n</function>\n</tool_call>";
  const r = parseQwenXmlToolCalls(content);
  assert.deepEqual(r.calls[0], { id: "call_xml_1", name: "edit", arguments: { path: "/app/x", text: "hi" }, source: "xml" });
});

test("error: function without parameters gives an error and no call", () => {
  const r = parseQwenXmlToolCalls("<tool_call>\n<function=bash>\n</function>\n</tool_call>");
  assert.deepEqual(r.calls, []);
  assert.equal(r.errors.length, 1);
  assert.match(r.errors[0]!, /tool call 1: <function=bash> has no <parameter=/);
});

test("error: unclosed <function tag gives an error and no call", () => {
  const r = parseQwenXmlToolCalls("<tool_call>\n<function=bash\n<parameter=command>\nls\n</parameter>\n</function>\n</tool_call>");
  assert.deepEqual(r.calls, []);
  assert.equal(r.errors.length, 1);
  assert.match(r.errors[0]!, /unclosed <function=/);
});

test("error: value cut off before </parameter> (finish_reason length) is not executed", () => {
  const r = parseQwenXmlToolCalls("<tool_call>\n<function=bash>\n<parameter=command>\nrm -rf /tmp/bu");
  assert.deepEqual(r.calls, []);
  assert.match(r.errors[0]!, /<parameter=command> is not closed/);
});

test("a bad call does not hide a good one after it", () => {
  const r = parseQwenXmlToolCalls(`<tool_call>\n<function=bash>\n</function>\n</tool_call>\n${call("pwd")}`);
  assert.deepEqual(
    r.calls.map((c) => [c.id, c.arguments.command]),
    [["call_xml_1", "pwd"]],
  );
  assert.equal(r.errors.length, 1);
});

test("<tool_call> without <function= and <function= without <tool_call> are reported", () => {
  const a = parseQwenXmlToolCalls("<tool_call>\nls -la\n</tool_call>");
  assert.deepEqual(a.calls, []);
  assert.match(a.errors[0]!, /expected <function=NAME>/);
  const b = parseQwenXmlToolCalls("<function=bash>\n<parameter=command>\nls\n</parameter>\n</function>");
  assert.deepEqual(b.calls, []);
  assert.match(b.errors[0]!, /outside a <tool_call>/);
});

test("plain text: no calls, no errors, textBefore is the text", () => {
  assert.deepEqual(parseQwenXmlToolCalls("  I think we are done.\n"), { calls: [], errors: [], textBefore: "I think we are done." });
  assert.deepEqual(parseQwenXmlToolCalls(""), { calls: [], errors: [], textBefore: "" });
});

test("splitThinking splits at the last </think> and drops a leading <think>", () => {
  assert.deepEqual(splitThinking("plan</think>\n\nanswer"), { thinking: "plan", answer: "answer" });
  assert.deepEqual(splitThinking("<think>\nplan\n</think>\n\nanswer"), { thinking: "plan", answer: "answer" });
  assert.deepEqual(splitThinking("a</think>b</think>\n\nc"), { thinking: "a</think>b", answer: "c" });
  assert.deepEqual(splitThinking("no thinking here"), { thinking: null, answer: "no thinking here" });
  assert.deepEqual(splitThinking("</think>\n\nx"), { thinking: "", answer: "x" });
});

test("wholeText: a call inside the thinking is parsed, as vLLM's qwen3_xml parser sees a raw completion", () => {
  const text = `let me try\n<tool_call>\n<function=bash>\n<parameter=command>\nls\n</parameter>\n</function>\n</tool_call></think>\n\nno call here<|im_end|>`;
  assert.equal(parseQwenXmlToolCalls(text).calls.length, 0);
  const whole = parseQwenXmlToolCalls(text, { wholeText: true });
  assert.deepEqual(whole.calls.map((c) => c.arguments), [{ command: "ls" }]);
});
