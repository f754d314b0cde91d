// What tmax prints on a terminal: colour (decided per stream) and the live lines of an episode.
import type { AgentEvent } from "../agent/loop.js";
import { splitThinking } from "../model/qwenXml.js";
import { stripControl } from "../util/terminal.js";
import type { z } from "zod";

/** What decides colour on one stream. */
export interface ColorInputs {
  /** The stream is a terminal. */
  isTTY: boolean;
  /** `--no-color` was given. */
  noColorFlag: boolean;
  env: { NO_COLOR?: string; FORCE_COLOR?: string; TERM?: string };
}

/**
 * Colour on a stream, first rule that applies: `--no-color` → off; NO_COLOR non-empty → off; FORCE_COLOR
 * non-empty and not "0" → on; TERM=dumb → off; else on iff the stream is a terminal.
 */
export function colorDecision(i: ColorInputs): boolean {
  if (i.noColorFlag) return false;
  if (i.env.NO_COLOR) return false;
  if (i.env.FORCE_COLOR && i.env.FORCE_COLOR !== "0") return true;
  if (i.env.TERM === "dumb") return false;
  return i.isTTY;
}

let noColorFlag = false;
let quiet = false;
/** main.ts calls this once the arguments are parsed: `--no-color`, `-q/--quiet`. */
export function setOutputFlags(flags: { noColor?: boolean; quiet?: boolean }): void {
  noColorFlag = Boolean(flags.noColor);
  quiet = Boolean(flags.quiet);
}

/** A command's own `-q` (Harbor's, after `eval`): the same quiet as the global flag. */
export function setQuiet(): void {
  quiet = true;
}

/** `-q/--quiet`: progress, steps and notices are not printed; the final result lines and errors are. */
export function isQuiet(): boolean {
  return quiet;
}

/** Whether text written to `stream` is coloured (decided at each call: the flag is parsed after import). */
export function colorOn(stream: { isTTY?: boolean }): boolean {
  return colorDecision({ isTTY: Boolean(stream.isTTY), noColorFlag, env: process.env });
}

export interface Palette {
  dim(s: string): string;
  bold(s: string): string;
  green(s: string): string;
  red(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
}

/** SGR colours for text that goes to `stream`. */
export function paletteFor(stream: { isTTY?: boolean }): Palette {
  const paint = (code: string) => (s: string) => (colorOn(stream) ? `\x1b[${code}m${s}\x1b[0m` : s);
  return { dim: paint("2"), bold: paint("1"), green: paint("32"), red: paint("31"), yellow: paint("33"), cyan: paint("36") };
}

/** Colours for stdout (the plain names) and for stderr (`errColor.red(…)`). */
export const { dim, bold, green, red, yellow, cyan } = paletteFor(process.stdout);
export const errColor = paletteFor(process.stderr);

/** `--json`: one document on stdout, checked against the schema that documents it (a mismatch is tmax's bug). */
export function emitJson<S extends z.ZodType>(schema: S, value: z.input<S>): void {
  process.stdout.write(`${JSON.stringify(schema.parse(value), null, 2)}\n`);
}

// model text and command output may carry terminal escape sequences: stripped before anything is printed
const firstLines = (text: string, n: number, width = 160) =>
  stripControl(text)
    .split("\n")
    .slice(0, n)
    .map((l) => (l.length > width ? `${l.slice(0, width)}…` : l));

/** Returns an event handler that prints each step as it happens (nothing with --quiet); `prefix` tags lines when trials run in parallel. */
export function stepPrinter(write: (line: string) => void = (l) => process.stdout.write(l + "\n"), prefix = ""): (e: AgentEvent) => void {
  return (e) => {
    if (quiet) return;
    const p = prefix ? dim(`[${prefix}] `) : "";
    switch (e.type) {
      case "turn": {
        const { answer, thinking } = splitThinking(e.turn.content);
        const tokens = e.turn.usage.completionTokens;
        write(`${p}${bold(`── step ${e.step + 1}`)} ${dim(`${(e.turn.latencyMs / 1000).toFixed(1)}s · ${tokens} tokens${thinking ? " · thinking hidden" : ""}${e.turn.retries ? ` · ${e.turn.retries} retries` : ""}`)}`);
        const thought = answer.replace(/<tool_call>[\s\S]*/, "").trim();
        for (const line of firstLines(thought, 3)) if (line.trim()) write(`${p}  ${dim(line)}`);
        break;
      }
      case "command": {
        const cmd = firstLines(e.command, 6);
        write(`${p}  ${cyan("$")} ${cmd[0]}`);
        for (const line of cmd.slice(1)) write(`${p}    ${line}`);
        break;
      }
      case "exec": {
        const status = e.timedOut ? yellow(`timed out`) : e.exitCode === 0 ? green(`exit 0`) : red(`exit ${e.exitCode}`);
        write(`${p}  → ${status} ${dim(`${(e.durationMs / 1000).toFixed(2)}s`)}`);
        const body = e.observation.replace(/\n\n\(exit_code=-?\d+\)$/, "");
        for (const line of firstLines(body, 4)) write(`${p}    ${dim(line)}`);
        break;
      }
      case "format_error":
        write(`${p}  ${yellow("format error:")} ${stripControl(e.error)}`);
        break;
      case "end":
        write(`${p}${bold("■")} ${e.status === "submitted" ? green(e.status) : yellow(e.status)}${e.error ? ` — ${stripControl(e.error)}` : ""}`);
        break;
    }
  };
}
