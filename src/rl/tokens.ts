// Checks and counts on an episode's in-memory token stream (prompt ids, sampled ids, logprobs, mask), before it
// becomes a rollout record.

/** Why an episode's in-memory token stream cannot be a record (null when it can): missing, flagged, or misaligned. */
export function streamProblem(stream: { promptIds: number[]; responseIds: number[]; logprobs: number[]; mask: number[]; problem?: string } | null): string | null {
  if (!stream) return "no token stream (the episode did not run the token loop)";
  if (stream.problem) return stream.problem;
  if (stream.promptIds.length === 0) return "no prompt ids";
  if (stream.responseIds.length === 0) return "no sampled ids";
  const n = stream.responseIds.length;
  if (stream.logprobs.length !== n || stream.mask.length !== n) return `misaligned stream: ${n} ids, ${stream.logprobs.length} logprobs, ${stream.mask.length} mask entries`;
  return null;
}

/** The token counts a rollout record carries next to its arrays. */
export function tokenCounts(promptTokens: readonly number[], responseMask: readonly number[]) {
  let model = 0;
  for (const m of responseMask) model += m;
  return { num_prompt_tokens: promptTokens.length, num_response_tokens: responseMask.length, num_model_tokens: model };
}
