// The live view of a job or rollout. On a TTY: a status block redrawn every second at the bottom — clock,
// progress, mean, errors, ETA, then one line per running trial (task, attempt, phase, step, retries,
// elapsed) — under a scrolling log of finished trials and notices. Not on a TTY: plain lines, one per event
// worth keeping (finished trials, retries, notices), never a control sequence.
import type { AgentEvent } from "../agent/loop.js";
import type { JobProgress, TrialEvent } from "../jobs/runner.js";
import { isQuiet, paletteFor } from "./render.js";
import { stripControl } from "../util/terminal.js";

interface Running {
  phase: string;
  step: number;
  since: number;
  retries: number;
  waiting: boolean;
}

export interface LiveViewOptions {
  out?: NodeJS.WriteStream;
  /** Overrides the TTY detection (tests). */
  tty?: boolean;
  /** Redraw period on a TTY (default 1000 ms). */
  refreshMs?: number;
  /** Noun in the header ("trials", "samples"). */
  unit?: string;
  /** Print only lines logged with `always` (default: -q/--quiet). */
  quiet?: boolean;
}

export interface LiveView {
  progress(p: JobProgress): void;
  trial(e: TrialEvent): void;
  agent(trial: string, e: AgentEvent): void;
  /** A line for the scrolling log (notices, group results); `always`: printed even with --quiet (an interruption's hint). */
  log(line: string, always?: boolean): void;
  done(): void;
}

export function fmtDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(sec).padStart(2, "0")}s` : `${sec}s`;
}

export function createLiveView(opts: LiveViewOptions = {}): LiveView {
  const out = opts.out ?? process.stdout;
  const quiet = opts.quiet ?? isQuiet();
  const tty = !quiet && (opts.tty ?? Boolean(out.isTTY)); // quiet: no status block either
  const { dim, green, red, yellow } = paletteFor(out); // colour as decided for the stream written to
  const unit = opts.unit ?? "trials";
  const started = Date.now();
  const running = new Map<string, Running>();
  let progress: JobProgress = { total: 0, done: 0, running: 0, errors: 0, infraErrors: 0, rewardSum: 0 };
  let drawn = 0; // lines of the status block currently on screen
  let seen = 0;
  let closed = false;

  const header = () => {
    const p = progress;
    const elapsed = Date.now() - started;
    const eta = p.done > 0 && p.done < p.total ? fmtDuration((elapsed / p.done) * (p.total - p.done)) : "-";
    const mean = p.done ? (p.rewardSum / p.done).toFixed(3) : "-";
    const errors = p.errors ? red(`errors ${p.errors}${p.infraErrors ? ` (${p.infraErrors} infra)` : ""}`) : "errors 0";
    return `⏱ ${fmtDuration(elapsed)} · ${p.done}/${p.total} ${unit} · running ${running.size} · mean ${mean} · ${errors} · ETA ${eta}`;
  };

  const trialLine = (name: string, r: Running) => {
    const [task, attempt] = splitName(name);
    const phase = r.waiting ? yellow("waiting (paused)") : r.phase === "build" ? yellow("build") : r.phase;
    const step = r.phase === "agent" && r.step ? ` step ${r.step}` : "";
    const retries = r.retries ? yellow(` retry ${r.retries}`) : "";
    return `  ${task} ${dim(`#${attempt}`)} · ${phase}${step}${retries} · ${fmtDuration(Date.now() - r.since)}`;
  };

  const clearBlock = () => {
    if (!tty || drawn === 0) return;
    out.write(`\x1b[${drawn}F\x1b[J`); // to the block's first line, then clear to the end of the screen
    drawn = 0;
  };

  const drawBlock = () => {
    if (!tty || closed) return;
    const rows = out.rows && out.rows > 4 ? out.rows - 2 : 30;
    const lines = [header(), ...[...running.entries()].slice(0, rows - 1).map(([n, r]) => trialLine(n, r))];
    if (running.size > rows - 1) lines.push(dim(`  … ${running.size - (rows - 1)} more`));
    const width = out.columns && out.columns > 20 ? out.columns : 200;
    out.write(lines.map((l) => clip(l, width)).join("\n") + "\n");
    drawn = lines.length;
  };

  const redraw = () => {
    clearBlock();
    drawBlock();
  };

  const timer = tty ? setInterval(redraw, opts.refreshMs ?? 1000) : undefined;
  timer?.unref();

  const log = (line: string, always = false) => {
    if (quiet && !always) return;
    clearBlock();
    out.write(`${line}\n`);
    drawBlock();
  };

  return {
    progress(p) {
      progress = p;
      if (p.done > seen && p.last) {
        seen = p.done;
        const r = p.last;
        running.delete(r.trial_name);
        const tag = r.exception_info ? red(`${r.exception_info.exception_type}${r.exception_info.infrastructure ? " (infra)" : ""}`) : r.config?.verifier?.disable ? "not verified" : r.reward >= 1 ? green("pass") : "fail";
        const took = r.started_at && r.finished_at ? ` · ${fmtDuration(Date.parse(r.finished_at) - Date.parse(r.started_at))}` : "";
        const steps = r.agent_result?.n_steps ? ` · ${r.agent_result.n_steps} steps` : "";
        const line = `${r.trial_name} ${tag} reward=${r.reward}${steps}${took}`;
        log(tty ? `✓ ${line}` : `[${p.done}/${p.total}] ${line} · ${fmtDuration(Date.now() - started)}`);
      } else if (tty) redraw();
    },
    trial(e) {
      const r = running.get(e.trial);
      if (e.type === "start") running.set(e.trial, { phase: "queued", step: 0, since: Date.now(), retries: 0, waiting: false });
      else if (!r) return;
      else if (e.type === "phase") {
        r.phase = e.phase;
        r.waiting = false;
        if (e.phase === "build") r.step = 0;
      } else if (e.type === "retry") {
        r.retries = e.retry;
        if (!tty && !quiet) out.write(`${e.trial} retry ${e.retry}: ${stripControl(e.reason)}\n`);
      } else if (e.type === "waiting") r.waiting = true;
      else if (e.type === "dropped" || e.type === "end") running.delete(e.trial);
      if (tty) redraw();
    },
    agent(trial, e) {
      const r = running.get(trial);
      if (!r || !("step" in e)) return;
      if (e.step !== r.step) {
        r.step = e.step;
        if (tty) redraw();
      }
    },
    log,
    done() {
      if (closed) return;
      redraw();
      closed = true;
      clearInterval(timer);
      drawn = 0; // leave the last block on screen
    },
  };
}

function splitName(name: string): [string, string] {
  const i = name.lastIndexOf("__");
  return i < 0 ? [name, "0"] : [name.slice(0, i), name.slice(i + 2)];
}

/** Cuts a line to the terminal width, counting visible characters only (SGR sequences kept). */
function clip(line: string, width: number): string {
  let visible = 0;
  let outText = "";
  for (let i = 0; i < line.length; i++) {
    if (line[i] === "\x1b") {
      const m = /^\x1b\[[0-9;]*m/.exec(line.slice(i));
      if (m) {
        outText += m[0];
        i += m[0].length - 1;
        continue;
      }
    }
    if (visible >= width - 1) return `${outText}\x1b[0m`;
    outText += line[i];
    visible++;
  }
  return outText;
}
