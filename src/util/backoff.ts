// Exponential backoff with jitter, the one shape every retry and probe uses: the delay doubles from `baseMs` per
// attempt up to `capMs`; half of it is fixed, half random, so many waiters do not retry in step.

/** The wait before retry `attempt` (0 = the first retry), in ms. */
export function jitteredBackoff(attempt: number, baseMs: number, capMs: number): number {
  const exp = Math.min(capMs, baseMs * 2 ** attempt);
  return exp / 2 + Math.random() * (exp / 2);
}
