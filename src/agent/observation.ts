// What the model sees after each command, byte for byte as each reference harness built it.
//   both:  stdout, then "\n" + stderr when stderr is non-empty (stderr alone when stdout is empty);
//          over `maxChars` code points: hint, "\n\n", the head, an elided count and the tail;
//          then "\n\n(exit_code=N)".
//   eval:  (Vanillux2Agent._format_tool_result) the two docker-compose messages removed, trailing whitespace
//          stripped (Python's rstrip), "(no output)" when nothing is left, no timeout notice — a command cut
//          by its time limit shows its partial output.
//   train: (open-instruct's vanillux env) trailing whitespace kept, "(no output)" only when truly empty,
//          and on exit code 124 the backend puts "Command timed out after 120s.\n" in front of stderr.
// Characters are counted as Python counts them (code points), and a cut never splits a surrogate pair.
import type { Profile } from "../model/types.js";
import { codePointLength, headCodePoints, pyRstrip, tailCodePoints } from "./pytext.js";

export const SUBMIT_MARKER = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT";

/** How long outputs are cut (the prompt file's `observation` block). */
export interface ObservationConfig {
  maxChars: number;
  headChars: number;
  tailChars: number;
  tooLongHint: string;
}

export const TOO_LONG_HINT =
  "The output of this command is too long to show in full. Only its beginning and end are shown below. " +
  "To see the rest, narrow it down with head, tail, grep or sed, or redirect the output to a file and inspect that file in parts.";

/**
 * The hint both reference harnesses fall back to when the prompt file's `observation` block has no
 * `too_long_hint` (vanillux_solver._truncate_observation, swerl_vanillux_sandbox's _OBS_TOO_LONG_HINT).
 */
export const REFERENCE_FALLBACK_HINT = "Output truncated.";

/** A prompt file's observation block as the reference reads it: each key it lacks takes the reference's fallback. */
export const REFERENCE_OBSERVATION_FALLBACKS: ObservationConfig = {
  maxChars: 10_000,
  headChars: 5_000,
  tailChars: 5_000,
  tooLongHint: REFERENCE_FALLBACK_HINT,
};

/**
 * Raw bytes kept per stream. train: open-instruct's DockerBackend._MAX_OUTPUT_BYTES, exactly. eval: Harbor's
 * environments read the whole output (no cap); tmax bounds memory at 16 MiB, far above anything an
 * observation shows (outputs beyond it differ from Harbor's only in the elided count and the tail).
 */
export const TRAIN_MAX_OUTPUT_BYTES = 1_000_000;
export const EVAL_MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

export function maxOutputBytesOf(profile: Profile): number {
  return profile === "train" ? TRAIN_MAX_OUTPUT_BYTES : EVAL_MAX_OUTPUT_BYTES;
}

/** Our defaults: the reference's limits, our own hint text. */
export const DEFAULT_OBSERVATION: ObservationConfig = {
  maxChars: 10_000,
  headChars: 5_000,
  tailChars: 5_000,
  tooLongHint: TOO_LONG_HINT,
};

export interface CommandOutcome {
  stdout: string;
  stderr: string;
  exitCode: number;
  timedOut: boolean;
}

export interface ObservationOptions {
  profile: Profile;
  /** The per-command limit, shown in train's timeout notice. */
  timeoutSec: number;
  config?: ObservationConfig;
}

/** Head/tail cut for outputs over the limit (in code points); shorter outputs come back unchanged. */
export function truncateOutput(output: string, config: ObservationConfig = DEFAULT_OBSERVATION): string {
  // A string of n UTF-16 units has at most n code points: most outputs need no count at all.
  if (output.length <= config.maxChars) return output;
  const length = codePointLength(output);
  if (length <= config.maxChars) return output;
  const { headChars, tailChars } = config;
  const elided = length - headChars - tailChars;
  return (
    `${config.tooLongHint}\n\n` +
    `---- HEAD (${headChars} chars) ----\n` +
    `${headCodePoints(output, headChars)}\n` +
    `---- ${elided} chars elided ----\n` +
    `---- TAIL (${tailChars} chars) ----\n` +
    `${tailCodePoints(output, tailChars)}`
  );
}

/** train's notice, as open-instruct's sandbox backend words it (without the newline it adds). */
export function timeoutNotice(timeoutSec: number): string {
  return `Command timed out after ${timeoutSec}s.`;
}

// Vanillux2Agent's _COMPOSE_PROVIDER_RE and _DOCKER_EXEC_ERROR_RE (podman-compose's banner, and the error line
// `podman compose exec` prints after a failing command), removed from every eval observation. Written for
// Python's semantics: `^`/`$` under (?m) match only at "\n" (JS's m flag also takes \r, U+2028, U+2029),
// `\s` is str.isspace() and `\d` any Unicode digit.
const PY_WS = "[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const COMPOSE_PROVIDER_RE =
  /\x1b\[4m>>>> Executing external compose provider "[^"]*docker-compose"\. Please see podman-compose\(1\) for how to disable this message\. <<<<\n\n\x1b\[0m/gu;
const DOCKER_EXEC_ERROR_RE = new RegExp(
  `(?<![^\\n])Error: executing [^\\n]*(?:docker-compose|docker compose).*?: exit status \\p{Nd}+${PY_WS}*(?![^\\n])`,
  "gsu",
);

/** eval's scrub (Vanillux2Agent._format_tool_result), before its rstrip. */
export function scrubComposeMessages(output: string): string {
  // the patterns need these words; most outputs have neither, and skip two regex passes
  if (!output.includes("compose")) return output;
  return output.replace(COMPOSE_PROVIDER_RE, "").replace(DOCKER_EXEC_ERROR_RE, "");
}

/**
 * The command's output as the profile's reference saw it before truncation: stdout and stderr joined,
 * train's timeout notice in front of stderr, eval's compose messages removed and trailing whitespace
 * stripped. train detects the submit marker in this text.
 */
export function commandOutput(outcome: CommandOutcome, opts: Omit<ObservationOptions, "config">): string {
  let stderr = outcome.stderr;
  // open-instruct's backend keys the notice on exit code 124 (what timeout(1) returns), not on a flag.
  if (opts.profile === "train" && outcome.exitCode === 124) stderr = `${timeoutNotice(opts.timeoutSec)}\n${stderr}`;
  let output = outcome.stdout;
  if (stderr) output = output ? `${output}\n${stderr}` : stderr;
  return opts.profile === "eval" ? pyRstrip(scrubComposeMessages(output)) : output;
}

/** The observation text for one executed command. */
export function formatObservation(outcome: CommandOutcome, opts: ObservationOptions): string {
  const output = commandOutput(outcome, opts);
  const body = output ? truncateOutput(output, opts.config ?? DEFAULT_OBSERVATION) : "(no output)";
  return `${body}\n\n(exit_code=${outcome.exitCode})`;
}
