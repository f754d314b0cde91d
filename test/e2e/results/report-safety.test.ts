// `tmax report --html` and the explorer over a real job (a real container, the tmax agent against a scripted
// model server) whose output holds what an agent can print or leave: an unterminated PEM private key block, and
// a trial dir named `javascript:…` next to its trials (as another tool or a local user can leave one).
// Before: the key's redaction ran to the end of the text (the report lost everything after it, the explorer's
// JSON answer was cut mid-string), and the trial's link was a live `javascript:` URL in the report.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { cp, mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { chromium, type Browser } from "playwright-core";
import { runJob } from "../../../src/jobs/runner.js";
import { modelConfigFromOptions } from "../../../src/model/client.js";
import { SUBMIT_MARKER } from "../../../src/agent/observation.js";
import { startExplorer } from "../../../src/explore/server.js";
import { startFakeVllm, type FakeVllm } from "../../support/fake-vllm.js";
import { jobOptions, removeContainersUnder } from "../../support/jobs.js";
import { ENGINE_SKIP, EXAMPLES, ROOT } from "../../support/env.js";

const CHROMIUM = "/usr/bin/chromium";
const BROWSER_SKIP: string | false = existsSync(CHROMIUM) ? false : `skipped: ${CHROMIUM} not found`;
const CLI = path.join(ROOT, "src/cli/main.ts");
// a real key's body, printed without its END line; what follows must survive redaction
const KEY_LINES = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString().trim().split("\n").slice(0, -1);
const KEY_BODY = KEY_LINES[5]!;
const AFTER = "AFTER-KEY-MARK";
// decoded by the browser in a javascript: URL: `alert(document.title)//…` (a dir name cannot hold `/`)
const JS_TRIAL = "javascript:alert(document.title)%2F%2F__0";

function tmax(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => resolve({ code, stderr }));
  });
}

describe("report --html and the explorer over a job with an unterminated key block and a javascript: trial dir", { skip: ENGINE_SKIP }, () => {
  let tmp: string;
  let jobDir: string;
  let server: FakeVllm;
  let browser: Browser | null = null;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-report-safety-"));
    const ds = path.join(tmp, "ds");
    await cp(path.join(EXAMPLES, "hello-file"), path.join(ds, "hello-file"), { recursive: true });
    // the command carries the text base64-encoded, so only its output holds the key
    const print = `echo ${Buffer.from(`${KEY_LINES.join("\n")}\n`).toString("base64")} | base64 -d; echo ${AFTER}; seq 1 400`;
    server = await startFakeVllm({ reply: (ctx) => (ctx.turn === 0 ? { text: "THOUGHT: look.", commands: [print] } : { text: "THOUGHT: done.", commands: [`echo ${SUBMIT_MARKER}`] }) });
    const opts = jobOptions(tmp, { datasetDir: ds, agent: "tmax", k: 1, concurrency: 1, model: modelConfigFromOptions({ baseUrl: server.baseUrl }) });
    jobDir = opts.jobDir;
    try {
      const [r] = await runJob(opts);
      assert.equal(r!.agent_result?.exit_status, "submitted");
    } finally {
      removeContainersUnder(tmp);
    }
    await cp(path.join(jobDir, "hello-file__0"), path.join(jobDir, JS_TRIAL), { recursive: true });
    if (!BROWSER_SKIP) browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"] });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  test("report --html: the key is masked, everything after it is kept, the data parses", async () => {
    const out = path.join(jobDir, "report.html");
    const r = await tmax(["report", jobDir, "--html", out]);
    assert.equal(r.code, 0, r.stderr);
    const html = await readFile(out, "utf8");
    assert.ok(!html.includes(KEY_BODY), "the key body is masked");
    assert.ok(html.includes(AFTER), "the output after the key is kept");
    assert.match(html, /<h2>Jobs<\/h2>[\s\S]*<\/html>\n$/, "the page is whole");
    const script = (id: string) => JSON.parse(new RegExp(`<script type="application/json" id="${id}">(.*?)</script>`).exec(html)![1]!);
    const data = script("report-data");
    assert.equal(data.trials.length, 2);
    const observation = JSON.stringify(script("report-trajectories"));
    assert.ok(observation.includes(`***\\n${AFTER}\\n1\\n2\\n3`), "the block ends at the first line that is not key");
  });

  test("explorer: the trial's JSON answer parses, the key is masked and the rest is there", async () => {
    const explorer = await startExplorer({ dir: tmp, port: 0, cacheDir: null });
    try {
      const sources = await (await fetch(`${explorer.url}api/sources`)).json();
      const job = sources.jobs.find((j: { dir: string }) => j.dir === jobDir);
      const res = await fetch(`${explorer.url}api/trial?job=${encodeURIComponent(job.id)}&trial=hello-file__0`);
      const text = await res.text();
      assert.equal(res.status, 200);
      const body = JSON.parse(text);
      const obs = body.trajectory.steps.flatMap((s: { executions?: { observation: string }[] }) => s.executions ?? []).map((e: { observation: string }) => e.observation).join("\n");
      assert.ok(obs.includes(`***\n${AFTER}\n1\n2\n3\n`), obs.slice(0, 400));
      assert.ok(obs.includes("\n400\n"), "the output runs to its end");
      assert.ok(!text.includes(KEY_BODY));
    } finally {
      await explorer.close();
    }
  });

  test("report --html in Chromium: a javascript: trial dir is a file link, clicking it runs nothing", { skip: BROWSER_SKIP }, async () => {
    const out = path.join(jobDir, "report.html");
    const page = await browser!.newPage();
    const dialogs: string[] = [];
    page.on("dialog", async (d) => {
      dialogs.push(d.message());
      await d.dismiss();
    });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`file://${out}`);
    // every link of the page, the trajectory viewer's included, is a fragment or a file below the report
    await page.locator(`#trials tr[data-trial]`).nth(1).click();
    const links = await page.$$eval("a[href]", (as) => as.map((a) => ({ href: a.getAttribute("href")!, protocol: (a as HTMLAnchorElement).protocol })));
    assert.ok(links.length >= 3, JSON.stringify(links));
    for (const l of links) assert.ok(l.href.startsWith("#") || l.protocol === "file:", `unsafe link ${JSON.stringify(l)}`);
    const jsLink = page.locator(`#trials a[href*="javascript"]`);
    assert.equal(await jsLink.count(), 1);
    assert.equal(await jsLink.getAttribute("href"), "./javascript%3Aalert(document.title)%252F%252F__0/agent/tmax-trajectory.json");
    await jsLink.click({ modifiers: [] }).catch(() => undefined);
    await page.waitForTimeout(500);
    assert.deepEqual(dialogs, [], "no script ran from the link");
    assert.deepEqual(errors, []);
    await page.close();
  });
});
