// `harbor run`'s options on `tmax eval`: each one parsed by the real option definitions (no job runs) and mapped to the
// tmax setting it sets; refusals and deprecations are one line each; a -c file and --print-config round-trip.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { Command } from "commander";
import { evalOptions, JOB_INIT_TEMPLATE } from "../../../src/cli/evalCli.js";
import { jobFileOf, resolveEval, type ResolvedEval } from "../../../src/cli/evalSettings.js";
import { jobOptionsOf, modelConfigOf, resolveResume } from "../../../src/cli/eval.js";
import { flagName, parseDotenv, REFUSED, splitModel } from "../../../src/cli/harborFlags.js";
import { jobConfigOf } from "../../../src/jobs/jobDir.js";
import { retryPolicyOf, retryPolicyOfConfig } from "../../../src/jobs/retryPolicy.js";
import { HARBOR_RETRY_EXCLUDE } from "../../../src/results/harbor.js";
import { formatJobFile, parseJobFile, readJobFile, type JobFile } from "../../../src/results/jobFile.js";
import { withExtra } from "../../../src/trial/trial.js";
import { EXAMPLES, ROOT } from "../../support/env.js";

const tmp = await mkdtemp(path.join(os.tmpdir(), "tmax-harbor-flags-"));
after(() => rm(tmp, { recursive: true, force: true }));

/** `tmax eval ARGV` as the CLI parses it, then the settings it stands for (with an optional -c file's contents). */
function parse(argv: string[], file?: JobFile): ResolvedEval {
  const cmd = evalOptions(new Command("eval")).exitOverride();
  cmd.parse(argv, { from: "user" });
  return resolveEval(cmd.opts(), (k) => cmd.getOptionValueSource(k), file, {});
}
const opt = (argv: string[]) => parse(argv).options as unknown as Record<string, unknown>;

describe("each harbor run option sets its tmax setting", () => {
  // [argv, tmax option key, expected value]
  const cases: [string[], string, unknown][] = [
    [["--job-name", "j1", "-o", "out"], "jobDir", path.join("out", "j1")],
    [["--jobs-dir", "out"], "jobDir", undefined], // checked below: out/<time>
    [["-k", "3"], "k", 3],
    [["--n-attempts", "3"], "k", 3],
    [["-n", "8"], "n", 8],
    [[], "n", 4],
    [["-n", "8", "--n-concurrent-agents", "2"], "n", 2],
    [["--timeout-multiplier", "2"], "timeoutMultiplier", 2],
    [["--agent-timeout-multiplier", "3"], "agentTimeoutMultiplier", 3],
    [["--verifier-timeout-multiplier", "4"], "verifierTimeoutMultiplier", 4],
    [["--agent-setup-timeout-multiplier", "5"], "agentSetupTimeoutMultiplier", 5],
    [["--environment-build-timeout-multiplier", "6"], "buildTimeoutMultiplier", 6],
    [["-q"], "quiet", true],
    [["--silent"], "quiet", true],
    [["--debug"], "debug", true],
    [["-r", "0"], "infraRetries", 0],
    [["--max-retries", "7"], "infraRetries", 7],
    [[], "infraRetries", 2],
    [["-a", "oracle"], "agent", "oracle"],
    [["-m", "openai/gpt-x"], "model", "gpt-x"],
    [["-m", "hosted_vllm/Qwen/Qwen3-8B"], "model", "Qwen/Qwen3-8B"],
    [["-m", "Qwen/Qwen3-8B"], "model", "Qwen/Qwen3-8B"],
    [["--ak", "temperature=0.3"], "temperature", 0.3],
    [["--agent-kwarg", "max_turns=12"], "maxSteps", 12],
    [["--ak", "api_base=http://gpu:8000/v1"], "baseUrl", "http://gpu:8000/v1"],
    [["--ae", "HOSTED_VLLM_API_BASE=http://gpu:9000/v1"], "baseUrl", "http://gpu:9000/v1"],
    [["--agent-env", "OPENAI_API_KEY=sk-x"], "apiKey", "sk-x"],
    [["-e", "daytona"], "backend", "daytona"],
    [["--env", "local"], "backend", "local"],
    [["--force-build"], "forceBuild", true],
    [["--no-force-build"], "forceBuild", false],
    [["--delete"], "backend", "docker"],
    [["--cpus", "limit", "--memory", "auto"], "backend", "docker"],
    [["--override-cpus", "2", "--override-memory-mb", "4096"], "resources", { cpus: 2, memoryMb: 4096 }],
    [["--ve", "JUDGE_URL=http://j", "--verifier-env", "A=1"], "verifierEnv", { JUDGE_URL: "http://j", A: "1" }],
    [["-p", EXAMPLES], "dataset", EXAMPLES],
    [["--path", EXAMPLES], "dataset", EXAMPLES],
    [["-d", "terminal-bench@2.0"], "dataset", "terminal-bench@2.0"],
    [["--registry-url", "https://r.example/registry.json"], "registry", "https://r.example/registry.json"],
    [["--registry-path", "reg.json"], "registry", "reg.json"],
    [["-i", "hello-*", "--include-task-name", "word-*"], "include", ["hello-*", "word-*"]],
    [["-x", "slow-*", "--exclude-task-name", "b"], "exclude", ["slow-*", "b"]],
    [["-l", "3"], "nTasks", 3],
    [["--n-tasks", "3"], "nTasks", 3],
    [["--extra-instruction", "Be brief."], "extraInstructions", ["Be brief."]],
    [["--model-max-retries", "9"], "modelMaxRetries", 9],
    [["-y"], "agent", "tmax"],
    [["--retry-include", "BuildError", "--retry-include", "AgentError"], "retryInclude", ["BuildError", "AgentError"]],
    [["--retry-exclude", "AgentTimeoutError"], "retryExclude", ["AgentTimeoutError"]],
    [["-r", "1"], "retryHarbor", true],
    [["--retry-exclude", "X"], "retryHarbor", true],
    [[], "retryHarbor", undefined],
    [["--infra-retries", "3"], "retryHarbor", undefined],
    [["--artifact", "/app/out.txt", "--artifact", "/data/results/"], "artifact", ["/app/out.txt", "/data/results"]],
    [["--disable-verification"], "disableVerification", true],
    [["--enable-verification"], "disableVerification", undefined],
    [["--no-delete"], "delete", false],
  ];
  for (const [argv, key, expected] of cases) {
    test(`${argv.join(" ") || "(defaults)"} → ${key}`, () => {
      const o = opt(argv);
      if (key === "jobDir" && expected === undefined) assert.match(String(o.jobDir), /^out\/\d{4}-\d\d-\d\d__\d\d-\d\d-\d\d$/);
      else assert.deepEqual(o[key], expected);
    });
  }

  test("--extra-instruction-path comes before --extra-instruction, and both after the task's instruction", async () => {
    const f = path.join(tmp, "extra.md");
    await writeFile(f, "From a file.");
    const o = parse(["--extra-instruction", "Inline.", "--extra-instruction-path", f]).options;
    assert.deepEqual(o.extraInstructions, ["From a file.", "Inline."]);
    assert.equal(withExtra("Do it.\n", o.extraInstructions), "Do it.\n\nFrom a file.\n\nInline.");
    assert.equal(withExtra("Do it.\n", []), "Do it.\n", "no extra: the task's instruction unchanged");
  });

  test("-m hosted_vllm/x: requests use x, the job records both (Harbor's model_name as given, tmax's served name)", () => {
    assert.deepEqual(splitModel("hosted_vllm/x"), { served: "x", provider: "hosted_vllm", asGiven: "hosted_vllm/x" });
    const o = parse(["-m", "hosted_vllm/x", "-p", EXAMPLES]).options;
    const model = modelConfigOf(o)!;
    assert.equal(model.model, "x");
    const config = jobConfigOf(jobOptionsOf(o, { datasetDir: EXAMPLES, jobDir: path.join(tmp, "j"), model }), { jobName: "j", datasetDir: EXAMPLES, checksums: {} });
    assert.equal(config.agents[0]!.model_name, "hosted_vllm/x");
    assert.equal(config.model!.name, "x");
  });

  test("the job config records resources, extra instructions and the --ve names (never their values)", () => {
    const o = parse(["-p", EXAMPLES, "--override-cpus", "2", "--extra-instruction", "Hi.", "--ve", "SECRET_TOKEN=s3cr3t", "--agent-setup-timeout-multiplier", "2"]).options;
    const config = jobConfigOf(jobOptionsOf(o, { datasetDir: EXAMPLES, jobDir: path.join(tmp, "j2"), model: modelConfigOf(o) }), { jobName: "j2", datasetDir: EXAMPLES, checksums: {} });
    assert.equal(config.environment.override_cpus, 2);
    assert.deepEqual(config.extra_instructions, ["Hi."]);
    assert.deepEqual(config.verifier_env_keys, ["SECRET_TOKEN"]);
    assert.equal(config.agent_setup_timeout_multiplier, 2);
    assert.doesNotMatch(JSON.stringify(config), /s3cr3t/);
  });
});

describe("refusals and deprecations: one line each", () => {
  for (const r of REFUSED) {
    const flag = r.flags.split(/[ ,]+/).filter((f) => f.startsWith("--")).at(-1)!;
    const argv = r.flags.includes("<") ? [flag, "x"] : [flag];
    test(`${argv.join(" ")} is refused naming the Harbor feature`, () => {
      assert.throws(() => parse(argv), (e: Error) => {
        assert.ok(e.message.startsWith(`${flagName(r.flags)} `), e.message);
        assert.match(e.message, /: not in tmax$/);
        assert.doesNotMatch(e.message, /\n/);
        return true;
      });
    });
  }
  const lines: [string[], RegExp][] = [
    [["-a", "claude-code"], /-a\/--agent claude-code: tmax runs tmax \(its model\), oracle or nop/],
    [["-a", "my.mod:Agent"], /import path \(module:Class\) is Harbor's Python plugin system: not in tmax/],
    [["-e", "modal"], /argument 'modal' is invalid\. Allowed choices are docker, daytona, local/],
    [["--cpus", "guarantee"], /--cpus guarantee: tmax applies a task's cpus as a limit/],
    [["--ak", "parser_name=xml"], /--ak parser_name: not a setting of tmax's agent/],
    [["--ak", "temperature"], /expected key=value/],
    [["--ak", "temperature=0.2", "--temperature", "0.5"], /--ak temperature=0.2 and --temperature 0.5 disagree/],
    [["--ae", "AWS_REGION=us-east-1"], /--ae AWS_REGION: tmax's agent runs in tmax, not in the container/],
    [["-k", "2", "--attempts", "3"], /--n-attempts and --attempts disagree/],
    [["-r", "1", "--infra-retries", "4"], /-r and --infra-retries disagree/],
    [["--job-dir", "a", "--job-name", "b"], /--job-dir and -o\/--jobs-dir or --job-name both given/],
    [["--job-name", "../x"], /a name, not a path/],
    [["-m", "a", "-m", "b"], /-m\/--model given twice \(a, b\): tmax runs one model a job/],
    [["--artifact", "app/out.txt"], /--artifact "app\/out.txt": expected an absolute path in the container/],
    [["--artifact", "/"], /expected an absolute path in the container, other than \//],
    [["--artifact", "/app/../etc"], /without \.\./],
    [["--artifact", "/manifest.json"], /artifacts\/manifest\.json/],
    [["--retry-include", "not a type"], /--retry-include "not a type": expected an exception type name/],
    [["--disable-verification", "--enable-verification"], /both given: pick one/],
  ];
  for (const [argv, re] of lines) test(`${argv.join(" ")} → ${re.source.slice(0, 50)}`, () => assert.throws(() => parse(argv), re));

  test("--max-retries (tmax's old model retries) and --build-timeout-multiplier print one deprecation line each", () => {
    const r = parse(["--max-retries", "3", "--build-timeout-multiplier", "2"]);
    assert.equal(r.options.infraRetries, 3);
    assert.equal(r.options.buildTimeoutMultiplier, 2);
    assert.equal(r.notices.length, 2);
    assert.match(r.notices[0]!, /--build-timeout-multiplier is now --environment-build-timeout-multiplier/);
    assert.match(r.notices[1]!, /--max-retries is now Harbor's -r\/--max-retries .*model request retries are --model-max-retries/);
    assert.deepEqual(parse(["-r", "3"]).notices.length, 0, "-r is Harbor's, no note");
  });

  test("--env-file: KEY=VALUE lines, export and quotes, # comments; a bad line names file and line", () => {
    assert.deepEqual(parseDotenv('# c\nexport A=1\nB="two words"\nC=x # note\n\n', "e"), { A: "1", B: "two words", C: "x" });
    assert.throws(() => parseDotenv("A=1\nnot a line\n", ".env"), /^Error: --env-file \.env:2: expected KEY=VALUE$/);
  });
});

describe("Harbor's retry rule, --artifact, --disable-verification and --no-delete in the job config", () => {
  const configOf = (argv: string[], name: string) => {
    const o = parse(["-p", EXAMPLES, ...argv]).options;
    return jobConfigOf(jobOptionsOf(o, { datasetDir: EXAMPLES, jobDir: path.join(tmp, name), model: modelConfigOf(o) }), { jobName: name, datasetDir: EXAMPLES, checksums: {} });
  };

  test("without Harbor's retry options: infrastructure failures only, 2 re-runs (tmax's rule, recorded as such)", () => {
    const c = configOf([], "r0");
    assert.equal(c.retry.max_retries, 2);
    assert.equal(c.retry.infrastructure_only, true);
    assert.equal(retryPolicyOfConfig(c.retry).infrastructureOnly, true);
  });

  test("-r: Harbor's rule and lists; --retry-exclude replaces Harbor's default list; a file's exclude_exceptions: null excludes nothing", () => {
    const c = configOf(["-r", "3"], "r1");
    assert.deepEqual([c.retry.max_retries, c.retry.include_exceptions, c.retry.infrastructure_only], [3, null, undefined]);
    assert.deepEqual(c.retry.exclude_exceptions, [...HARBOR_RETRY_EXCLUDE]);
    const d = configOf(["-r", "1", "--retry-include", "BuildError", "--retry-exclude", "AgentError"], "r2");
    assert.deepEqual([d.retry.include_exceptions, d.retry.exclude_exceptions], [["BuildError"], ["AgentError"]]);
    const f = parse(["-p", EXAMPLES], parseJobFile("retry: {max_retries: 1, exclude_exceptions: null}\n")).options;
    assert.equal(f.retryHarbor, true);
    assert.equal(f.retryExclude, null);
    assert.deepEqual(retryPolicyOf(f.retryInclude, f.retryExclude), { include: null, exclude: null });
  });

  test("a resume keeps the stored retry rule; -r given again switches to Harbor's (a run-time knob, not refused)", async () => {
    const jobDir = path.join(tmp, "retry-resume");
    await (await import("node:fs/promises")).mkdir(jobDir, { recursive: true });
    await writeFile(path.join(jobDir, "config.json"), JSON.stringify(configOf(["--retry-include", "BuildError", "-r", "1"], "retry-resume")));
    const kept = parse(["--resume", jobDir]);
    const r = resolveResume(kept.options, kept.given);
    assert.deepEqual([r.retryHarbor, r.retryInclude, r.infraRetries], [true, ["BuildError"], 1]);
    const again = parse(["--resume", jobDir, "-r", "4"]);
    assert.equal(resolveResume(again.options, again.given).infraRetries, 4);
  });

  test("--artifact, --disable-verification and --no-delete are recorded where Harbor records them, and print-config round-trips them", async () => {
    const c = configOf(["--artifact", "/app/out.txt", "--disable-verification", "--no-delete"], "a1");
    assert.deepEqual(c.artifacts, ["/app/out.txt"]);
    assert.deepEqual(c.verifier, { disable: true });
    assert.equal(c.environment.delete, false);
    const r = parse(["-p", EXAMPLES, "--artifact", "/app/out.txt", "--disable-verification", "--no-delete"]);
    assert.equal(r.notices.length, 2, r.notices.join("\n"));
    const printed = formatJobFile(jobFileOf(r.options), "yaml");
    const back = parse([], parseJobFile(printed, "p.yaml")).options;
    assert.deepEqual([back.artifact, back.disableVerification, back.delete], [["/app/out.txt"], true, false]);
    const plain = configOf([], "a2");
    assert.equal(plain.verifier, undefined);
    assert.equal(plain.artifacts, undefined);
    assert.equal(plain.environment.delete, true);
  });
});

describe("job config files (-c), --print-config, tmax jobs init", () => {
  test("--print-config output fed back with -c gives the same effective config; flags override the file", async () => {
    const first = parse(["-p", EXAMPLES, "-k", "2", "-n", "3", "-i", "hello-*", "-l", "1", "--job-name", "rt", "-o", path.join(tmp, "jobs"), "--timeout-multiplier", "1.5", "--override-memory-mb", "3000", "--extra-instruction", "Hi.", "--ve", "A=1", "-m", "hosted_vllm/m", "--ak", "temperature=0.2", "--network", "none", "--pull", "never"]);
    const printed = formatJobFile(jobFileOf(first.options), "json");
    const file = path.join(tmp, "printed.json");
    await writeFile(file, printed);
    const again = parse([], readJobFile(file));
    assert.equal(formatJobFile(jobFileOf(again.options), "json"), printed);
    for (const k of ["k", "n", "agent", "baseUrl", "maxTokens", "modelMaxRetries", "backend", "quiet", "dataset", "include", "nTasks", "jobDir", "timeoutMultiplier", "resources", "extraInstructions", "verifierEnv", "model", "modelName", "temperature", "network", "pull"] as const)
      assert.deepEqual(again.options[k], first.options[k], k);
    // a flag over the file
    const over = parse(["-k", "5", "-x", "word-*", "-a", "nop"], readJobFile(file));
    assert.equal(over.options.k, 5);
    assert.equal(over.options.agent, "nop");
    assert.deepEqual(over.options.exclude, ["word-*"]);
    assert.equal(over.options.n, 3, "the file's value where no flag is given");
    assert.ok(over.given.has("k") && over.given.has("n"), "file keys count as given (a resume compares them)");
  });

  test("the model card example: eval profile, its sampling and limits, k 5, terminal-bench@2.0", () => {
    const o = parse([], readJobFile(path.join(ROOT, "examples/jobs/tmax-9b-card.yaml"))).options;
    assert.deepEqual(
      { profile: o.profile, temperature: o.temperature, topP: o.topP, maxTokens: o.maxTokens, maxSteps: o.maxSteps, maxTotalTokens: o.maxTotalTokens, commandTimeout: o.commandTimeout, k: o.k, n: o.n, dataset: o.dataset, model: o.model, agent: o.agent, backend: o.backend, verifierIsolation: o.verifierIsolation },
      { profile: "eval", temperature: 0.7, topP: 0.95, maxTokens: 16384, maxSteps: 64, maxTotalTokens: 65536, commandTimeout: 120, k: 5, n: 4, dataset: "terminal-bench@2.0", model: "tmax-9b", agent: "tmax", backend: "docker", verifierIsolation: "shared" },
    );
  });

  test("tmax jobs init's starter is a valid job file", async () => {
    const o = parse([], parseJobFile(await readFile(JOB_INIT_TEMPLATE, "utf8"), "job.yaml")).options;
    assert.equal(o.dataset, "examples/tasks");
    assert.equal(o.n, 4);
  });

  test("a file's unknown key, a bad value, or a Harbor feature tmax lacks is one line naming it", () => {
    assert.throws(() => parseJobFile("n_attempt: 3\n", "job.yaml"), /^Error: job\.yaml: \(top level\): unknown key n_attempt/);
    assert.throws(() => parseJobFile("tmax: {max_step: 3}\n", "job.yaml"), /job\.yaml: tmax: unknown key max_step/);
    assert.throws(() => parseJobFile("n_attempts: three\n", "job.yaml"), /job\.yaml: n_attempts: /);
    assert.throws(() => parseJobFile("a: [\n", "job.yaml"), /job\.yaml: not valid YAML/);
    assert.throws(() => parse([], parseJobFile("environment: {mounts: [{type: bind, source: /, target: /host}]}\n")), /^Error: --mounts\/--mounts-json mounts host paths/);
    assert.throws(() => parse([], parseJobFile("agents: [{name: a}, {name: b}]\n")), /tmax runs one agent a job/);
    assert.throws(() => parse([], parseJobFile("agents: [{import_path: 'x.y:Z'}]\n")), /^Error: --agent-import-path loads a Harbor agent class/);
    assert.throws(() => parse([], parseJobFile("artifacts: [{source: /app/x, destination: y}]\n")), /^Error: artifacts: \/app\/x: a destination is Harbor's/);
    assert.throws(() => parse([], parseJobFile("artifacts: [{source: /var/log/x, service: api}]\n")), /from the task's main container only/);
    // Harbor's defaults as `harbor job init --full` writes them are accepted
    const full = parse([], parseJobFile("retry: {exclude_exceptions: [AgentTimeoutError, VerifierTimeoutError, RewardFileNotFoundError, RewardFileEmptyError, VerifierOutputParseError, ApiUsageLimitError, AgentSafetyRefusalError, AgentAuthenticationError, ModelNotFoundError]}\nenvironment: {delete: true, mounts: null}\nmetrics: []\nsource_jobs: []\n"));
    assert.equal(full.options.backend, "docker");
  });

  test("a resume compares Harbor's options too: a different --override-cpus is refused, naming the flag", async () => {
    const jobDir = path.join(tmp, "resume-job");
    const o = parse(["-p", EXAMPLES, "--override-cpus", "2", "--job-dir", jobDir]).options;
    const config = jobConfigOf(jobOptionsOf(o, { datasetDir: EXAMPLES, jobDir, model: modelConfigOf(o) }), { jobName: "resume-job", datasetDir: EXAMPLES, checksums: {} });
    await (await import("node:fs/promises")).mkdir(jobDir, { recursive: true });
    await writeFile(path.join(jobDir, "config.json"), JSON.stringify(config));
    const same = parse(["--resume", jobDir]);
    assert.deepEqual(resolveResume(same.options, same.given).resources, { cpus: 2 });
    const other = parse(["--resume", jobDir, "--override-cpus", "4"]);
    assert.throws(() => resolveResume(other.options, other.given), /--override-cpus\/--override-memory-mb \(stored \{"cpus":2\}, given \{"cpus":4\}\)/);
  });
});

test("a job file's environment type and agent name go through the same checks as -e and -a", () => {
  assert.throws(() => parse([], parseJobFile("environment: {type: modal}\n")), /-e\/--env modal: tmax's environments are docker, daytona, local/);
  assert.throws(() => parse([], parseJobFile("agents: [{name: terminus-2}]\n")), /-a\/--agent terminus-2: tmax runs tmax/);
});

test("the CLI itself: --env-file sets $TMAX_BASE_URL before the defaults are read; notes and refusals go to stderr", async () => {
  const { spawnSync } = await import("node:child_process");
  const envFile = path.join(tmp, ".env");
  await writeFile(envFile, "TMAX_BASE_URL=http://from-env-file:8000/v1\nOPENAI_API_KEY=sk-never-printed-123\n");
  const cli = (args: string[]) => spawnSync(process.execPath, ["--import", "tsx", path.join(ROOT, "src/cli/main.ts"), ...args], { cwd: ROOT, encoding: "utf8", env: { ...process.env, NO_COLOR: "1", TMAX_BASE_URL: "", TMAX_MODEL: "" } });
  const r = cli(["eval", "--env-file", envFile, "-p", EXAMPLES, "--max-retries", "1", "--print-config"]);
  assert.equal(r.status, 0, r.stderr);
  const printed = JSON.parse(r.stdout);
  assert.equal(printed.tmax.base_url, "http://from-env-file:8000/v1");
  assert.equal(printed.retry.max_retries, 1);
  assert.doesNotMatch(r.stdout, /sk-never-printed/);
  assert.match(r.stderr, /^note: --max-retries is now Harbor's/);
  const refused = cli(["eval", "-p", EXAMPLES, "--plugin", "my.plugin:P"]);
  assert.equal(refused.status, 2);
  assert.deepEqual(refused.stderr.trim().split("\n"), ["tmax: error: --plugin loads a Harbor job plugin (Python import path): not in tmax"]);
});
