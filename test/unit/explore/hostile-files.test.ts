// Hostile job dirs against the explorer and `tmax report`: links out of the root, fifos, a 150 MB crafted
// trajectory, secrets in files, foreign Host headers, markdown/terminal injection in task and model text.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createWriteStream } from "node:fs";
import fs from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { once } from "node:events";
import { after, test } from "node:test";
import { renderReportHtml } from "../../../src/explore/report.js";
import { startExplorer } from "../../../src/explore/server.js";
import { renderMarkdown, reportJob } from "../../../src/results/report.js";
import { writeJobDir } from "../../support/fixtures.js";
import { ROOT } from "../../support/env.js";

const tmp = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-hostile-files-"));
after(() => fs.rm(tmp, { recursive: true, force: true }));

const SECRET = "sk-h8hostile0123456789abcdefXYZ";
process.env.H8_TEST_API_KEY = SECRET;
after(() => delete process.env.H8_TEST_API_KEY);

const data = path.join(tmp, "data");
const jobDir = await writeJobDir(data, {
  jobName: "hostile-job",
  dataset: "bench",
  model: "m\u001b]0;pwned\u0007",
  k: 1,
  trials: [
    { task: "big", attempt: 0, reward: 1 },
    { task: "link", attempt: 0, reward: 0 },
    { task: "secret", attempt: 0, reward: 1 },
  ],
});
// a 150 MB crafted trajectory
{
  const file = path.join(jobDir, "big__0", "agent", "trajectory.json");
  const out = createWriteStream(file);
  out.write('{"schema":"tmax.trajectory/v1","steps":[{"observation":"');
  const chunk = "A".repeat(1024 * 1024);
  for (let i = 0; i < 150; i++) if (!out.write(chunk)) await once(out, "drain");
  out.end('"}]}');
  await once(out, "finish");
}
// a trajectory that is a link to a host file holding the environment, and a verifier log that is a fifo
await fs.rm(path.join(jobDir, "link__0", "agent", "trajectory.json"));
await fs.symlink("/proc/self/environ", path.join(jobDir, "link__0", "agent", "trajectory.json"));
await fs.mkdir(path.join(jobDir, "link__0", "verifier"), { recursive: true });
execFileSync("mkfifo", [path.join(jobDir, "link__0", "verifier", "test-stdout.txt")]);
// a verifier log holding a secret
await fs.mkdir(path.join(jobDir, "secret__0", "verifier"), { recursive: true });
await fs.writeFile(path.join(jobDir, "secret__0", "verifier", "test-stdout.txt"), `key is ${SECRET} and hf_abcdefghijklmnopqrstuvwxyz0123\n`);

function get(port: number, p: string, host = `127.0.0.1:${port}`): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path: p, headers: { host } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    }).on("error", reject);
  });
}

test("explorer: Host check, CSP + nosniff everywhere, regular files only, size caps, redaction", async () => {
  const explorer = await startExplorer({ dir: data, port: 0, cacheDir: null });
  after(() => explorer.close());
  const port = Number(new URL(explorer.url).port);
  for (const host of ["evil.example", "127.0.0.1.evil.example:80", "localhost.evil"]) {
    const r = await get(port, "/api/sources", host);
    assert.equal(r.status, 403, host);
  }
  for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, "localhost"]) assert.equal((await get(port, "/", host)).status, 200, host);
  for (const p of ["/", "/assets/app.js", "/api/sources", "/nope"]) {
    const r = await get(port, p);
    assert.equal(r.headers["x-content-type-options"], "nosniff", p);
    assert.match(String(r.headers["content-security-policy"]), /default-src 'none'/, p);
  }
  const id = "hostile-job";
  const big = await get(port, `/api/trial?job=${id}&trial=big__0`);
  assert.equal(big.status, 200);
  assert.match(big.body, /too large to show: 150\.0 MB/);
  const link = await get(port, `/api/trial?job=${id}&trial=link__0`);
  assert.equal(link.status, 200);
  assert.ok(!link.body.includes("PATH="), "the host environment is not served");
  const parsed = JSON.parse(link.body);
  assert.equal(parsed.trajectory, null, "a linked trajectory is not opened");
  assert.equal(parsed.verifier, null, "a fifo is not opened (and does not hang the server)");
  const viaFile = await get(port, `/api/trajectory-file?path=${encodeURIComponent("hostile-job/link__0/agent/trajectory.json")}`);
  assert.ok(!viaFile.body.includes("PATH="));
  const secret = await get(port, `/api/trial?job=${id}&trial=secret__0`);
  assert.ok(!secret.body.includes(SECRET) && !secret.body.includes("hf_abcdefghijklmnopqrstuvwxyz0123"));
  assert.match(secret.body, /key is \*\*\*/);
});

test("report --html: a 150 MB trajectory, a link to /proc/self/environ and secrets do not crash or leak", async () => {
  const html = await renderReportHtml([jobDir], { baseDir: tmp });
  assert.ok(html.length < 50 * 1024 * 1024);
  assert.match(html, /too large to show/);
  assert.ok(!html.includes("PATH=/"), "no host environment inlined");
  assert.ok(!html.includes(SECRET));
  assert.match(html, /Content-Security-Policy/);
});

test("markdown report escapes model and task text, no escape sequences", async () => {
  const md = renderMarkdown([reportJob(jobDir)]);
  assert.ok(!md.includes("\u001b") && !md.includes("\u0007"));
});

test("registry and task text never prints an escape sequence: datasets list, tasks list, tasks check", async () => {
  // measured before: `tmax datasets list` printed a registry's OSC 52 (clipboard), OSC 0 (title) and CSI 2J raw
  const esc = /[\u001b\u0007\u009b]/;
  const registry = path.join(tmp, "registry-esc.json");
  await fs.writeFile(registry, JSON.stringify([{ name: "evil\u001b]0;title\u0007", version: "1\u009b2J", description: "d \u001b]52;c;cm0gLXJm\u0007 \u001b[2J", tasks: [] }]));
  const ds = path.join(tmp, "esc-dataset");
  const task = path.join(ds, "t\u001b[31mred");
  await fs.mkdir(task, { recursive: true });
  await fs.writeFile(path.join(task, "task.yaml"), 'instruction: hi\ndifficulty: "e\\e]52;c;eA==\\a"\ncategory: "c\\e[2J"\n');
  await fs.writeFile(path.join(task, "Dockerfile"), "FROM localhost/tb-base:bookworm\n");
  await fs.writeFile(path.join(task, "run-tests.sh"), "#!/bin/bash\ntrue\n");
  await fs.mkdir(path.join(task, "tests"));
  const broken = path.join(ds, "b\u001b]0;x\u0007");
  await fs.mkdir(broken);
  await fs.writeFile(path.join(broken, "task.toml"), "");
  const cli = (args: string[]) => execFileSync(process.execPath, ["--import", "tsx", path.join(ROOT, "src/cli/main.ts"), ...args], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const listed = cli(["datasets", "list", "--registry", registry]);
  assert.match(listed, /^evil@1\t0 tasks\td\s*$/m);
  const tasks = cli(["tasks", "list", ds]);
  assert.match(tasks, /^tred\ttb1\t/m);
  let checked = "";
  try {
    cli(["tasks", "check", ds]);
  } catch (err) {
    checked = (err as { stdout: string }).stdout; // exit 1: the broken task has errors
  }
  assert.match(checked, /instruction\.md/);
  for (const [what, out] of [["datasets list", listed], ["tasks list", tasks], ["tasks check", checked]]) assert.ok(!esc.test(out), `${what}: ${JSON.stringify(out)}`);
});
