// One client session (one WebSocket connection, as OpenEnv's): at most one episode at a time, each reset on a
// fresh sandbox, messages handled one after another in arrival order. Closing the session (close message,
// disconnect, idle timeout, server shutdown) ends the episode and waits until its sandbox is removed.
import { randomUUID } from "node:crypto";
import { pickTask, type ServeEnv } from "./env.js";
import { HarnessEpisode } from "./harness.js";
import { parseOr, ProtocolError, ResetParams, type StepPayload } from "./protocol.js";
import { Tb2Episode } from "./tb2.js";

type Episode = Tb2Episode | HarnessEpisode;

export class Session {
  readonly id = randomUUID();
  readonly createdAt = Date.now();
  lastActivity = Date.now();
  /** Messages being handled or queued (a busy session is never idle). */
  inFlight = 0;
  stepCount = 0;
  private episode: Episode | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly abort = new AbortController();
  private closing: Promise<void> | null = null;

  constructor(private readonly env: ServeEnv) {}

  get closed(): boolean {
    return this.closing !== null;
  }

  /** Runs `fn` after every earlier message of this session (OpenEnv's loop handles one message at a time). */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    this.inFlight++;
    this.lastActivity = Date.now();
    const run = this.chain.then(fn);
    this.chain = run.catch(() => undefined).finally(() => {
      this.inFlight--;
      this.lastActivity = Date.now();
    });
    return run;
  }

  async reset(data: Record<string, unknown>): Promise<StepPayload> {
    this.checkOpen();
    const params = parseOr(ResetParams, data, "reset parameters");
    await this.endEpisode();
    const task = pickTask(this.env, params);
    const actionSet = params.action_set ?? this.env.actionSet;
    const started =
      actionSet === "harness"
        ? await HarnessEpisode.start(this.env, task, params, params.profile ?? this.env.profile, this.abort.signal)
        : await Tb2Episode.start(this.env, task, params, this.abort.signal);
    if (this.closed) {
      // closed while the sandbox was being made: it goes now, not with the next reset
      await started.episode.close();
      throw new ProtocolError("SESSION_ERROR", "session closed during reset");
    }
    this.episode = started.episode;
    this.stepCount = 0;
    return started.payload;
  }

  async step(data: Record<string, unknown>): Promise<StepPayload> {
    this.checkOpen();
    const episode = this.episode;
    if (!episode) throw new ProtocolError("EXECUTION_ERROR", "TB2 environment not initialized. Call reset() first.");
    const payload = episode instanceof HarnessEpisode ? await episode.step(data) : await episode.step(data, this.abort.signal);
    this.stepCount++;
    return payload;
  }

  state(): Record<string, unknown> {
    if (!this.episode) return { episode_id: null, step_count: 0 };
    return this.episode.getState();
  }

  /** Ends the episode and removes its sandbox; idempotent, and every caller waits for the same removal. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.abort.abort(new Error("session closed"));
      // a reset or step in flight stops at the abort (a sandbox it made is removed by it), then the episode goes
      await this.chain;
      await this.endEpisode();
    })();
    return this.closing;
  }

  private async endEpisode(): Promise<void> {
    const episode = this.episode;
    this.episode = null;
    await episode?.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new ProtocolError("SESSION_ERROR", "session is closed");
  }
}
