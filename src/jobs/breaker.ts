// A circuit breaker for jobs and rollouts: after N consecutive infrastructure failures (model server or
// engine unreachable) new trials wait instead of failing one after another; the infrastructure is probed
// with exponential backoff and the job resumes by itself when it answers again, or stops after a bound.
import { jitteredBackoff } from "../util/backoff.js";

export interface BreakerOptions {
  /** Consecutive infrastructure failures that pause the job (default 3). */
  threshold?: number;
  /** Longest pause before the job gives up (default 30 min). */
  maxPauseMs?: number;
  /** First probe delay; doubles (with jitter) up to `maxProbeDelayMs`. */
  probeBaseMs?: number;
  maxProbeDelayMs?: number;
  /** null when everything answers, else a one-line reason. */
  probe: (signal: AbortSignal) => Promise<string | null>;
  onPause?: (line: string) => void;
  onResume?: (line: string) => void;
  signal?: AbortSignal;
}

export class InfrastructureDownError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InfrastructureDownError";
  }
}


export class CircuitBreaker {
  private consecutive = 0;
  private pause: Promise<void> | undefined;
  private down: InfrastructureDownError | undefined;
  /** Incremented on every pause: a trial that saw a pause start after it began does not count it as its own failure. */
  pauses = 0;
  readonly threshold: number;

  constructor(private readonly opts: BreakerOptions) {
    this.threshold = Math.max(1, opts.threshold ?? 3);
  }

  get paused(): boolean {
    return this.pause !== undefined;
  }

  /** A trial went through without an infrastructure failure. */
  success(): void {
    this.consecutive = 0;
  }

  /** A trial failed on infrastructure; the N-th in a row pauses the job. */
  failure(reason: string): void {
    this.consecutive++;
    if (this.consecutive >= this.threshold && !this.pause && !this.down) this.open(reason);
  }

  /** Resolves at once when closed; waits while paused; throws once the pause bound was exceeded. */
  async gate(): Promise<void> {
    while (this.pause) await this.pause;
    if (this.down) throw this.down;
  }

  private open(reason: string): void {
    this.pauses++;
    const started = Date.now();
    const maxPauseMs = this.opts.maxPauseMs ?? 30 * 60_000;
    this.opts.onPause?.(`paused: ${this.consecutive} trials in a row failed on infrastructure (${reason}); waiting for it to answer again (up to ${fmt(maxPauseMs)})`);
    this.pause = (async () => {
      let last = reason;
      for (let attempt = 0; ; attempt++) {
        const left = maxPauseMs - (Date.now() - started);
        if (left <= 0 || this.opts.signal?.aborted) break;
        await sleep(Math.min(left, jitteredBackoff(attempt, this.opts.probeBaseMs ?? 1000, this.opts.maxProbeDelayMs ?? 30_000)), this.opts.signal);
        if (this.opts.signal?.aborted) break;
        const probeSignal = AbortSignal.timeout(15_000);
        const problem = await this.opts.probe(probeSignal).catch((e: unknown) => (e as Error)?.message ?? String(e));
        if (problem === null) {
          this.consecutive = 0;
          this.opts.onResume?.(`resumed: the infrastructure answers again after ${fmt(Date.now() - started)}`);
          return;
        }
        last = problem;
      }
      this.down = new InfrastructureDownError(`stopped: the infrastructure did not come back within ${fmt(maxPauseMs)} (${last})`);
    })().finally(() => {
      this.pause = undefined;
    });
  }
}

function fmt(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s}s` : `${Math.round(s / 60)} min`;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
