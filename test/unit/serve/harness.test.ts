// The harness action set's turns: each action becomes the turn tmax's model client would have built from the
// equivalent chat completion, and an action that is not exactly one turn is refused with one clear line.
import assert from "node:assert/strict";
import { test } from "node:test";
import { renderQwenXmlToolCall } from "../../../src/model/qwenXml.js";
import { evalTurn, HarnessAction } from "../../../src/serve/harness.js";
import { parseOr } from "../../../src/serve/protocol.js";

const action = (data: unknown) => parseOr(HarnessAction, data, "action");

test("a command is one bash tool call, as a tool-calling server returns it", () => {
  const turn = evalTurn(action({ command: "ls -la" }));
  assert.equal(turn.toolCalls.length, 1);
  assert.deepEqual({ ...turn.toolCalls[0], id: "x" }, { id: "x", name: "bash", arguments: { command: "ls -la" }, source: "tool_calls" });
  assert.equal(turn.message.tool_calls?.[0]?.function.arguments, JSON.stringify({ command: "ls -la" }));
  assert.equal(turn.finishReason, "tool_calls");
});

test("a message is parsed as the model client parses a completion: reasoning kept, XML calls read from content", () => {
  const withReasoning = evalTurn(action({ message: { content: "THOUGHT", reasoning_content: "think", tool_calls: [{ id: "c1", type: "function", function: { name: "bash", arguments: '{"command":"pwd"}' } }] } }));
  assert.equal(withReasoning.message.content, "<think>\nthink\n</think>\n\nTHOUGHT");
  assert.equal(withReasoning.toolCalls[0]!.id, "c1");
  const xml = evalTurn(action({ text: `THOUGHT: look\n${renderQwenXmlToolCall("bash", { command: "cat a" })}` }));
  assert.deepEqual(xml.toolCalls.map((c) => [c.name, c.arguments, c.source]), [["bash", { command: "cat a" }, "xml"]]);
  const broken = evalTurn(action({ tool_call: { name: "bash", arguments: "{not json" } }));
  assert.equal(broken.toolCalls.length, 0);
  assert.equal(broken.parseErrors.length, 1);
});

test("not exactly one turn, or a train action on eval: one clear line", () => {
  assert.throws(() => action({}), /exactly one of command, tool_call, message, text\/token_ids/);
  assert.throws(() => action({ command: "a", text: "b" }), /exactly one/);
  assert.throws(() => action({ command: "a", extra: 1 }), /Unrecognized key/);
  assert.throws(() => evalTurn(action({ token_ids: [1, 2] })), /token_ids are for the train profile/);
  assert.doesNotThrow(() => action({ token_ids: [1, 2], text: "ab", logprobs: [-1, -2] }));
});
