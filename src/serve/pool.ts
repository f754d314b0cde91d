// Sessions are resources: at most `max` at a time (each holds at most one sandbox; an episodes request holds
// as many slots as it runs at once), a full server refuses at once (never queues), a session idle longer than
// the timeout is closed, and shutdown closes them all. A slot is free only once its sandbox is removed.
import type { ServeEnv } from "./env.js";
import { BusyError } from "./protocol.js";
import { Session } from "./session.js";

export interface PoolOptions {
  maxSessions: number;
  /** Seconds without a message before a session is closed (0: never). */
  idleTimeoutSec: number;
  /** Told when the reaper closes a session (the server closes its socket with a message). */
  onIdle?: (session: Session) => void;
}

export class SessionPool {
  readonly sessions = new Set<Session>();
  /** Slots held by other work (episodes requests). */
  private reserved = 0;
  private readonly reaper: NodeJS.Timeout | null;

  constructor(private readonly env: ServeEnv, private readonly opts: PoolOptions) {
    const ms = opts.idleTimeoutSec * 1000;
    this.reaper = ms > 0 ? setInterval(() => this.reap(ms), Math.max(250, Math.min(ms / 4, 5000))) : null;
    this.reaper?.unref();
  }

  get active(): number {
    return this.sessions.size + this.reserved;
  }

  get max(): number {
    return this.opts.maxSessions;
  }

  /** A new session, or BusyError at once when the server is full. */
  open(): Session {
    if (this.active >= this.max) throw new BusyError(this.active, this.max);
    const session = new Session(this.env);
    this.sessions.add(session);
    return session;
  }

  /** Closes the session (its sandbox removed), then frees its slot. */
  async close(session: Session): Promise<void> {
    try {
      await session.close();
    } finally {
      this.sessions.delete(session);
    }
  }

  /** Holds `n` slots (or BusyError at once); the returned function frees them. */
  reserve(n: number): () => void {
    if (this.active + n > this.max) throw new BusyError(this.active, this.max, `slots (${n} asked)`);
    this.reserved += n;
    let freed = false;
    return () => {
      if (freed) return;
      freed = true;
      this.reserved -= n;
    };
  }

  capacity(): { active_sessions: number; max_sessions: number; available_slots: number; is_at_capacity: boolean } {
    const active = Math.min(this.active, this.max);
    return { active_sessions: active, max_sessions: this.max, available_slots: this.max - active, is_at_capacity: active >= this.max };
  }

  /** Closes every session (shutdown); waits for their sandboxes to go. */
  async closeAll(): Promise<void> {
    if (this.reaper) clearInterval(this.reaper);
    await Promise.all([...this.sessions].map((s) => this.close(s)));
  }

  private reap(timeoutMs: number): void {
    const now = Date.now();
    for (const s of this.sessions) {
      if (s.inFlight === 0 && !s.closed && now - s.lastActivity > timeoutMs) {
        this.opts.onIdle?.(s);
        void this.close(s);
      }
    }
  }
}
