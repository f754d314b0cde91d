// The reward of a trial, one rule for the trial that records it and for every reader of a result.json (tmax's
// or Harbor's): the verifier's "reward" entry when present, else the mean of its entries; 0 when it gave none.
type Json = Record<string, unknown>;
const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
const obj = (v: unknown): Json | null => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Json) : null);

/** The reward of a verifier's named rewards: the "reward" entry, else the mean of the numeric entries; 0 if none. */
export function rewardOf(rewards: Json): number {
  const direct = num(rewards.reward);
  if (direct !== null) return direct;
  const values = Object.values(rewards).map(num).filter((v): v is number => v !== null);
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : 0;
}

/** The reward of a parsed result.json: its top-level `reward`, else rewardOf its verifier's rewards; 0 if none. */
export function rewardOfResult(r: Json): number {
  const top = num(r.reward);
  if (top !== null) return top;
  const rewards = obj(obj(r.verifier_result)?.rewards);
  return rewards ? rewardOf(rewards) : 0;
}
