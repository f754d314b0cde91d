// Observation bytes against the authors' functions: a seeded fuzz of command outcomes, each run in a real
// container. The raw bytes of each outcome are captured in the container once and fed to the reference
// functions (test/fixtures/observation/reference.py, re-typed from hamishivi/tmax); tmax runs the same
// command through its shell on both exec paths of the docker backend, in both profiles. Byte for byte.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { mergesStderr } from "../../../src/agent/loop.js";
import { formatObservation, maxOutputBytesOf, type ObservationConfig } from "../../../src/agent/observation.js";
import { openShell, type Shell } from "../../../src/agent/shell.js";
import type { Profile } from "../../../src/model/types.js";
import { connectEngine, dockerBackend, TMAX_JOB_LABEL, type Sandbox } from "../../../src/sandbox/index.js";
import { seededRandom } from "../../../src/util/random.js";
import { BASE_IMAGE, ENGINE_SKIP, ROOT } from "../../support/env.js";

const REFERENCE = path.join(ROOT, "test/fixtures/observation/reference.py");
const JOB = `observation-fuzz-${process.pid}`;
const SEED = 20260417;
/** The prompt file's block both sides use (a YAML block hint ends in a newline, as the authors' does). */
const OBS: ObservationConfig = { maxChars: 10_000, headChars: 5_000, tailChars: 5_000, tooLongHint: "The output was too long.\nNarrow it down.\n" };
const PY_OBS = { max_chars: OBS.maxChars, head_chars: OBS.headChars, tail_chars: OBS.tailChars, too_long_hint: OBS.tooLongHint };
/** Long enough for the shell wrapper to start and write on a loaded host before timeout(1) stops the command. */
const TIMEOUT_SEC = 4;

/** One write of a command: bytes given, or `n` copies of one ASCII byte (large outputs). */
type Piece = { fd: 1 | 2; bytes: Buffer } | { fd: 1 | 2; fill: number; byte: string };
interface Outcome {
  name: string;
  pieces: Piece[];
  exit: number;
  /** Ends with a sleep past TIMEOUT_SEC: timeout(1) stops it, partial output kept. */
  timeout?: boolean;
}

const b = (s: string | number[]) => (typeof s === "string" ? Buffer.from(s, "utf8") : Buffer.from(s));
const BOM = [0xef, 0xbb, 0xbf];
const BANNER = '\x1b[4m>>>> Executing external compose provider "/usr/local/bin/docker-compose". Please see podman-compose(1) for how to disable this message. <<<<\n\n\x1b[0m';
const EXEC_ERROR = "Error: executing /usr/local/bin/docker-compose exec main bash -c x: exit status 3\n";

/** Chunks the fuzz draws from: text, multi-byte and invalid UTF-8, BOMs, Python-only whitespace, compose messages. */
const MENU: Buffer[] = [
  b("hello world\n"),
  b("héllo wörld — ünïcödé\n"),
  b("😀 emoji 🎉\n"),
  b("漢字とかな\n"),
  b(BOM),
  b([0xff]),
  b([0xc0, 0xaf]),
  b([0xed, 0xa0, 0x80]),
  b([0xe2, 0x82]),
  b([0x80, 0x80]),
  b([0xf0, 0x9f, 0x98]),
  b("  \n\t\n"),
  b("x\x1c\x1d"),
  b([0xc2, 0x85]), // U+0085: whitespace to Python's rstrip
  b("\u3000"),
  b("a\r\nb\r"),
  b([0x00, 0x41, 0x00]),
  b(BANNER),
  b(EXEC_ERROR),
  b("line without newline"),
];

function explicitOutcomes(): Outcome[] {
  const a = (n: number): Piece => ({ fd: 1, fill: n, byte: "a" });
  return [
    { name: "BOM first on stdout", pieces: [{ fd: 1, bytes: b([...BOM, ...b("hi\n")]) }], exit: 0 },
    { name: "BOM on both streams", pieces: [{ fd: 1, bytes: b([...BOM, ...b("out")]) }, { fd: 2, bytes: b([...BOM, ...b("err\n")]) }], exit: 1 },
    { name: "invalid bytes", pieces: [{ fd: 1, bytes: b([0x61, 0xff, 0x62, 0xc0, 0xaf, 0xed, 0xa0, 0x80, 0x0a]) }], exit: 0 },
    { name: "1,000,000-byte cap cuts a 3-byte character after 2 bytes", pieces: [a(999_998), { fd: 1, bytes: b("€tail\n") }], exit: 0 },
    { name: "exactly 1,000,000 bytes", pieces: [a(999_999), { fd: 1, bytes: b("\n") }], exit: 0 },
    { name: "cap cuts a 4-byte character on stderr after 1 byte", pieces: [{ fd: 1, bytes: b("ok\n") }, { fd: 2, fill: 999_999, byte: "e" }, { fd: 2, bytes: b("😀end") }], exit: 2 },
    { name: "empty", pieces: [], exit: 0 },
    { name: "empty, failing", pieces: [], exit: 1 },
    { name: "whitespace only", pieces: [{ fd: 1, bytes: b("\n\n  \t\n") }, { fd: 2, bytes: b(" \n") }], exit: 0 },
    { name: "over 10,000 characters of multi-byte text", pieces: [{ fd: 1, bytes: b("ü".repeat(12_345)) }], exit: 0 },
    { name: "over 10,000 characters, trailing whitespace", pieces: [{ fd: 1, fill: 10_050, byte: "z" }, { fd: 1, bytes: b("\n".repeat(30)) }], exit: 0 },
    { name: "stderr only", pieces: [{ fd: 2, bytes: b("bash: nope: command not found\n") }], exit: 127 },
    { name: "both streams interleaved", pieces: [{ fd: 1, bytes: b("a\n") }, { fd: 2, bytes: b("b\n") }, { fd: 1, bytes: b("c\n") }, { fd: 2, bytes: b("d") }], exit: 0 },
    { name: "compose banner and exec error line", pieces: [{ fd: 2, bytes: b(BANNER) }, { fd: 1, bytes: b("real\n") }, { fd: 2, bytes: b(EXEC_ERROR) }], exit: 3 },
    { name: "timeout with partial output on both streams", pieces: [{ fd: 1, bytes: b("partial\n") }, { fd: 2, bytes: b("warn\n") }], exit: 0, timeout: true },
    { name: "timeout with no output", pieces: [], exit: 0, timeout: true },
    { name: "timeout after a BOM and a cut character", pieces: [{ fd: 1, bytes: b([...BOM, 0xe2, 0x82]) }], exit: 0, timeout: true },
  ];
}

function randomOutcomes(n: number): Outcome[] {
  const rand = seededRandom(SEED);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  return Array.from({ length: n }, (_, i) => {
    const pieces: Piece[] = [];
    const count = Math.floor(rand() * 6);
    for (let k = 0; k < count; k++) {
      const fd = rand() < 0.6 ? 1 : 2;
      pieces.push(rand() < 0.1 ? { fd, fill: 4_000 + Math.floor(rand() * 8_000), byte: pick(["x", "y", " "]) } : { fd, bytes: pick(MENU) });
    }
    return { name: `random #${i}`, pieces, exit: pick([0, 0, 0, 1, 2, 127, 130]), timeout: rand() < 0.05 };
  });
}

/** The command: each piece written with printf (octal escapes) or head|tr, then the exit code or a sleep. */
function commandOf(o: Outcome): string {
  const parts = o.pieces.map((p) => {
    const redirect = p.fd === 2 ? " >&2" : "";
    if ("fill" in p) return `head -c ${p.fill} /dev/zero | tr '\\0' '${p.byte}'${redirect}`;
    return `printf '${[...p.bytes].map((x) => `\\${x.toString(8).padStart(3, "0")}`).join("")}'${redirect}`;
  });
  parts.push(o.timeout ? "sleep 20" : `exit ${o.exit}`);
  return parts.join("; ");
}

interface Raw {
  stdout: Buffer;
  stderr: Buffer;
  merged: Buffer;
  exitApart: number;
  exitMerged: number;
}

/** The outcome's raw bytes, captured in the container: streams apart, and merged in write order. */
async function capture(sb: Sandbox, o: Outcome): Promise<Raw> {
  const run = o.timeout ? `timeout ${TIMEOUT_SEC} bash -c "$1"` : `bash -c "$1"`;
  const script = `mkdir -p /tmp/fz; ${run} >/tmp/fz/o 2>/tmp/fz/e; echo $? >/tmp/fz/rc; ${run} >/tmp/fz/m 2>&1; echo $? >/tmp/fz/rcm`;
  const r = await sb.exec(["bash", "-c", script, "capture", commandOf(o)], { timeoutSec: 60 });
  assert.equal(r.exitCode, 0, r.stderr);
  const read = async (f: string) => (await sb.readFile(`/tmp/fz/${f}`))!;
  return {
    stdout: await read("o"),
    stderr: await read("e"),
    merged: await read("m"),
    exitApart: Number((await read("rc")).toString().trim()),
    exitMerged: Number((await read("rcm")).toString().trim()),
  };
}

function reference(cases: object[]): string[] {
  const r = spawnSync("python3", [REFERENCE], { input: JSON.stringify(cases), maxBuffer: 1 << 28 });
  assert.equal(r.status, 0, r.stderr.toString());
  return JSON.parse(r.stdout.toString()) as string[];
}

const OUTCOMES = [...explicitOutcomes(), ...randomOutcomes(30)];

describe("observation bytes equal the authors' functions on a seeded fuzz of command outcomes", { skip: ENGINE_SKIP }, () => {
  const docker = connectEngine();
  const sandboxes: Sandbox[] = [];
  const raws: Raw[] = [];
  let expected: { eval: string[]; train: string[] };
  before(async () => {
    const sb = await dockerBackend({ docker, executor: "exec" }).create({ image: BASE_IMAGE, network: "none", name: "obs-fuzz-capture", labels: { [TMAX_JOB_LABEL]: JOB } });
    sandboxes.push(sb);
    for (const o of OUTCOMES) raws.push(await capture(sb, o));
    const py = (profile: "eval" | "train") =>
      reference(
        raws.map((r, i) => ({
          profile,
          stdout: r.stdout.toString("base64"),
          stderr: r.stderr.toString("base64"),
          merged: r.merged.toString("base64"),
          exit_code: profile === "eval" ? r.exitMerged : r.exitApart,
          timeout_sec: OUTCOMES[i]!.timeout ? TIMEOUT_SEC : 120,
          obs: PY_OBS,
        })),
      );
    expected = { eval: py("eval"), train: py("train") };
  });
  after(async () => {
    await Promise.all(sandboxes.map((s) => s.remove()));
  });

  test(`the fuzz covers ${OUTCOMES.length} outcomes, the required kinds among them`, () => {
    assert.ok(OUTCOMES.length >= 40);
    const has = (f: (r: Raw, o: Outcome) => boolean) => OUTCOMES.some((o, i) => f(raws[i]!, o));
    assert.ok(has((r) => r.stdout.subarray(0, 3).equals(b(BOM))), "a leading BOM");
    assert.ok(has((r) => r.stdout.length === 1_000_000), "exactly 1,000,000 bytes");
    assert.ok(has((r) => r.stdout.length > 1_000_000 && (r.stdout[1_000_000]! & 0xc0) === 0x80), "a character across the cut");
    assert.ok(has((r, o) => Boolean(o.timeout) && r.exitApart === 124 && r.stdout.length > 0), "a timeout with partial output");
    assert.ok(has((r) => r.stdout.length === 0 && r.stderr.length > 0), "stderr only");
    assert.ok(has((r) => r.merged.length === 0), "empty output");
  });

  for (const mode of ["resident", "exec"] as const) {
    for (const profile of ["eval", "train"] as const satisfies readonly Profile[]) {
      test(`${profile} profile, ${mode === "resident" ? "resident executor" : "an exec per command"}: every observation byte for byte`, async () => {
        const sb = await dockerBackend({ docker, executor: mode }).create({ image: BASE_IMAGE, network: "none", name: `obs-fuzz-${mode}`, labels: { [TMAX_JOB_LABEL]: JOB } });
        sandboxes.push(sb);
        // the loops' own settings: the profile's byte cap, the backend's stream rule
        const shell = (timeoutSec: number): Promise<Shell> => openShell(sb, { timeoutSec, maxOutputBytes: maxOutputBytesOf(profile), mergeStderr: mergesStderr(profile, sb.backend) });
        const normal = await shell(120);
        const short = await shell(TIMEOUT_SEC);
        const mismatches: string[] = [];
        for (const [i, o] of OUTCOMES.entries()) {
          const result = await (o.timeout ? short : normal).run(commandOf(o));
          const ours = formatObservation(result, { profile, timeoutSec: o.timeout ? TIMEOUT_SEC : 120, config: OBS });
          const theirs = expected[profile][i]!;
          if (ours !== theirs) mismatches.push(`${o.name}: ours ${JSON.stringify(ours.slice(0, 200))}… vs reference ${JSON.stringify(theirs.slice(0, 200))}…`);
        }
        assert.deepEqual(mismatches, []);
      });
    }
  }

  test("the host watchdog stops a command whose timeout(1) was stopped: partial output kept on both exec paths, as the reference shows it", async () => {
    // the command stops its parent (the in-container timeout), so only the host watchdog (limit + 15 s) can end it
    const command = "printf 'partial-out\\n'; printf 'partial-err\\n' >&2; kill -STOP $PPID; sleep 100";
    const bytes = { stdout: b("partial-out\n"), stderr: b("partial-err\n"), merged: b("partial-out\npartial-err\n") };
    const runs = (["resident", "exec"] as const).flatMap((mode) =>
      (["eval", "train"] as const).map(async (profile) => {
        const sb = await dockerBackend({ docker, executor: mode }).create({ image: BASE_IMAGE, network: "none", name: `obs-watchdog-${mode}`, labels: { [TMAX_JOB_LABEL]: JOB } });
        sandboxes.push(sb);
        const shell = await openShell(sb, { timeoutSec: TIMEOUT_SEC, maxOutputBytes: maxOutputBytesOf(profile), mergeStderr: mergesStderr(profile, sb.backend) });
        const result = await shell.run(command);
        assert.deepEqual([result.exitCode, result.timedOut], [124, true], `${mode} ${profile}`);
        const [theirs] = reference([{ profile, stdout: bytes.stdout.toString("base64"), stderr: bytes.stderr.toString("base64"), merged: bytes.merged.toString("base64"), exit_code: 124, timeout_sec: TIMEOUT_SEC, obs: PY_OBS }]);
        assert.equal(formatObservation(result, { profile, timeoutSec: TIMEOUT_SEC, config: OBS }), theirs, `${mode} ${profile}`);
      }),
    );
    await Promise.all(runs);
  });
});
