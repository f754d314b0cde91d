// Several model servers: least-outstanding routing, an episode stays on its server, a dying server is taken
// out and its episodes go on elsewhere, and it is probed back in when it answers again.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { expandBaseUrls } from "../../../src/cli/options.js";
import { createModelClient, modelConfigFromOptions } from "../../../src/model/client.js";
import type { ModelPool } from "../../../src/model/pool.js";
import type { ChatMessage } from "../../../src/model/types.js";
import { startFakeVllm, type FakeVllm } from "../../support/fake-vllm.js";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

const servers: FakeVllm[] = [];
after(async () => {
  for (const s of servers) await s.close().catch(() => undefined);
});

const reply = () => ({ text: "THOUGHT", commands: ["echo hi"], delayMs: 150 });
const instructions = (s: FakeVllm) => new Set(s.requests.map((r) => r.messages[1].content as string));

test("two servers, one dying: balanced, sticky, failover without an error, probed back in", async () => {
  const a = await startFakeVllm({ reply });
  const b = await startFakeVllm({ reply });
  servers.push(a, b);
  const pool = createModelClient(modelConfigFromOptions({ baseUrl: a.baseUrl, baseUrls: [a.baseUrl, b.baseUrl], maxRetries: 0, timeoutMs: 10_000 })) as ModelPool;
  after(() => pool.close());

  // 8 episodes at once: least-outstanding spreads the first turns 4/4
  const episodes: ChatMessage[][] = Array.from({ length: 8 }, (_, i) => [
    { role: "system", content: "You call tools." },
    { role: "user", content: `task ${i}` },
  ]);
  const turn = async (msgs: ChatMessage[]) => {
    const t = await pool.complete(msgs);
    msgs.push(t.message, { role: "tool", content: "hi\n\n(exit_code=0)", tool_call_id: t.toolCalls[0]?.id ?? "x" } as ChatMessage);
  };
  await Promise.all(episodes.map(turn));
  assert.equal(a.requests.length, 4);
  assert.equal(b.requests.length, 4);
  const onA = instructions(a);

  // later turns stay on their episode's server (prefix cache)
  await Promise.all(episodes.map(turn));
  assert.deepEqual(instructions(a), onA);
  assert.equal(a.requests.length, 8);
  assert.equal(b.requests.length, 8);

  // A dies: its episodes' next turns go to B, with no error
  const portA = Number(new URL(a.baseUrl).port);
  await a.close();
  await Promise.all(episodes.map(turn));
  assert.equal(b.requests.length, 16);
  assert.deepEqual(pool.stats().map((s) => s.healthy), [false, true]);

  // A comes back at the same address: the probe puts it back, new episodes use it again
  const a2 = await startFakeVllm({ reply, port: portA });
  servers.push(a2);
  const deadline = Date.now() + 30_000;
  while (!pool.stats()[0].healthy && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(pool.stats()[0].healthy, true, "probed back in");
  const fresh: ChatMessage[][] = Array.from({ length: 4 }, (_, i) => [
    { role: "system", content: "You call tools." },
    { role: "user", content: `new task ${i}` },
  ]);
  await Promise.all(fresh.map(turn));
  assert.equal(a2.requests.length, 2);

  // both gone: one clear error
  await a2.close();
  await b.close();
  await assert.rejects(pool.complete(fresh[0]), (e: Error) => e.name === "ModelError" && !e.message.includes("\n"));
});

test("--base-url repeated or as a file of URLs", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "tmax-pool-"));
  after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, "servers.txt");
  await writeFile(file, "# two replicas\nhttp://127.0.0.1:8001/v1\nhttp://127.0.0.1:8002/v1  # second\n");
  assert.deepEqual(expandBaseUrls("http://127.0.0.1:8000/v1"), ["http://127.0.0.1:8000/v1"]);
  assert.deepEqual(expandBaseUrls(`http://127.0.0.1:8000/v1,${file}`), ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1", "http://127.0.0.1:8002/v1"]);
  assert.throws(() => expandBaseUrls("nowhere.txt"), /neither an http\(s\) URL nor a file/);
});
