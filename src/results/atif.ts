// Trajectories in Harbor's ATIF (Agent Trajectory Interchange Format) and back to the view the explorer draws.
// Writing: tmax's native trajectory → ATIF-v1.7 (system and user steps, then one agent step per model turn with its
// tool calls, observations and metrics incl. token ids and logprobs). Reading: ATIF, tmax's own, or a plain list of
// chat messages (what custom Harbor agents write) → one "view" shape with tmax's step fields.
import type { Trajectory } from "../agent/schema.js";

export const ATIF_VERSION = "ATIF-v1.7";

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | null => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Json) : null);
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined);

function text(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => str(obj(p)?.text) ?? "").join("");
  return content == null ? "" : JSON.stringify(content);
}

/** Drops undefined values so the file carries no nulls where Harbor's models forbid them on non-agent steps. */
function compact<T extends Json>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

export function toAtif(t: Trajectory, opts: { sessionId: string }): Json {
  const steps: Json[] = [];
  const system = t.messages.find((m) => m.role === "system");
  steps.push({ step_id: 1, timestamp: t.startedAt, source: "system", message: text(system?.content) });
  steps.push({ step_id: 2, timestamp: t.startedAt, source: "user", message: t.task.instruction });
  for (const s of t.steps) {
    const calls = [...(s.toolCall ? [s.toolCall] : []), ...(s.extraCalls ?? [])];
    const results: Json[] = (s.executions ?? []).map((e, i) =>
      compact({ source_call_id: calls[i]?.id, content: e.observation, extra: { exit_code: e.exitCode, timed_out: e.timedOut, output_truncated: e.outputTruncated, duration_ms: e.durationMs } }),
    );
    if (s.formatError) results.push({ content: s.formatError, extra: { format_error: true } });
    steps.push(
      compact({
        step_id: steps.length + 1,
        timestamp: s.startedAt,
        source: "agent",
        model_name: t.model.name,
        message: s.model.content,
        reasoning_content: s.model.reasoning,
        tool_calls: calls.length ? calls.map((c) => ({ tool_call_id: c.id, function_name: "bash", arguments: { command: c.command }, extra: { source: c.source } })) : undefined,
        observation: results.length ? { results } : undefined,
        metrics: compact({
          prompt_tokens: s.model.usage.promptTokens,
          completion_tokens: s.model.usage.completionTokens,
          prompt_token_ids: s.model.promptTokenIds,
          completion_token_ids: s.model.completionTokenIds,
          logprobs: s.model.logprobs?.map((l) => l.logprob),
          extra: compact({ finish_reason: s.model.finishReason, latency_ms: s.model.latencyMs, retries: s.model.retries, tokens: s.model.logprobs?.map((l) => l.token) }),
        }),
      }),
    );
  }
  return {
    schema_version: ATIF_VERSION,
    session_id: opts.sessionId,
    agent: {
      name: t.agent.name,
      version: t.agent.version,
      model_name: t.model.name,
      extra: { profile: t.agent.profile, temperature: t.model.temperature, top_p: t.model.topP, max_tokens: t.model.maxTokens, limits: t.limits, sandbox: { backend: t.sandbox.backend, image: t.sandbox.image } },
    },
    steps,
    final_metrics: {
      total_prompt_tokens: t.usage.promptTokens,
      total_completion_tokens: t.usage.completionTokens,
      total_steps: steps.length,
      extra: { context_tokens: t.usage.contextTokens, exit_status: t.exitStatus, error: t.error ?? null, duration_ms: t.durationMs },
    },
  };
}

/** Harbor's per-trial rollout_details from the per-turn token ids and logprobs, when the turns carry them. */
export function rolloutDetails(t: Trajectory): { prompt_token_ids: number[][]; completion_token_ids: number[][]; logprobs?: number[][] }[] | null {
  const turns = t.steps.filter((s) => s.model.completionTokenIds || s.model.logprobs);
  if (turns.length === 0) return null;
  const detail: { prompt_token_ids: number[][]; completion_token_ids: number[][]; logprobs?: number[][] } = {
    prompt_token_ids: turns.map((s) => s.model.promptTokenIds ?? []),
    completion_token_ids: turns.map((s) => s.model.completionTokenIds ?? []),
  };
  if (turns.some((s) => s.model.logprobs)) detail.logprobs = turns.map((s) => (s.model.logprobs ?? []).map((l) => l.logprob));
  return [detail];
}

export type TrajectoryKind = "tmax" | "atif" | "messages" | "unknown";

export function trajectoryKind(v: unknown): TrajectoryKind {
  if (Array.isArray(v)) return v.every((m) => obj(m) && typeof obj(m)!.role === "string") ? "messages" : "unknown";
  const o = obj(v);
  if (!o) return "unknown";
  if (o.schema === "tmax.trajectory/v1") return "tmax";
  if (typeof o.schema_version === "string" && o.schema_version.startsWith("ATIF")) return "atif";
  if (Array.isArray(o.messages) && !Array.isArray(o.steps)) return "messages";
  return "unknown";
}

/** An ATIF trajectory in the shape the explorer draws (tmax's step fields). */
export function atifToView(a: Json): Json {
  const steps = Array.isArray(a.steps) ? a.steps.map(obj).filter((s): s is Json => s !== null) : [];
  const agent = obj(a.agent) ?? {};
  const final = obj(a.final_metrics) ?? {};
  const instruction = steps.find((s) => s.source === "user");
  const turns = steps
    .filter((s) => s.source === "agent")
    .map((s, index) => {
      const m = obj(s.metrics) ?? {};
      const extra = obj(m.extra) ?? {};
      const calls = (Array.isArray(s.tool_calls) ? s.tool_calls : []).map(obj).filter((c): c is Json => c !== null);
      const results = (Array.isArray(obj(s.observation)?.results) ? (obj(s.observation)!.results as unknown[]) : []).map(obj).filter((r): r is Json => r !== null);
      const command = (c: Json) => str(obj(c.arguments)?.command) ?? str(obj(c.arguments)?.cmd) ?? JSON.stringify(c.arguments ?? {});
      const tokens = Array.isArray(extra.tokens) ? extra.tokens : null;
      return {
        index,
        startedAt: str(s.timestamp),
        model: {
          content: text(s.message),
          reasoning: str(s.reasoning_content),
          finishReason: str(extra.finish_reason) ?? "stop",
          usage: { promptTokens: num(m.prompt_tokens), completionTokens: num(m.completion_tokens) },
          latencyMs: num(extra.latency_ms),
          retries: num(extra.retries) ?? 0,
          logprobs: Array.isArray(m.logprobs) ? m.logprobs.map((lp, i) => ({ token: tokens ? String(tokens[i] ?? "") : "·", logprob: Number(lp) })) : undefined,
        },
        toolCall: calls[0] ? { id: str(calls[0].tool_call_id), command: command(calls[0]) } : undefined,
        extraCalls: calls.length > 1 ? calls.slice(1).map((c) => ({ id: str(c.tool_call_id), command: command(c) })) : undefined,
        executions: results
          .filter((r) => !obj(r.extra)?.format_error)
          .map((r) => {
            const call = calls.find((c) => c.tool_call_id === r.source_call_id);
            const re = obj(r.extra) ?? {};
            return { command: call ? command(call) : "", exitCode: num(re.exit_code), timedOut: re.timed_out === true, outputTruncated: re.output_truncated === true, durationMs: num(re.duration_ms), observation: text(r.content) };
          }),
        formatError: str(results.find((r) => obj(r.extra)?.format_error)?.content),
      };
    });
  const fx = obj(final.extra) ?? {};
  return {
    schema: "view/atif",
    source: str(a.schema_version),
    task: { name: "", instruction: instruction ? text(instruction.message) : "" },
    agent: { name: str(agent.name) ?? "unknown", version: str(agent.version) ?? "", profile: str(obj(agent.extra)?.profile) ?? "—" },
    model: { name: str(agent.model_name) ?? "" },
    steps: turns,
    exitStatus: str(fx.exit_status) ?? "unknown",
    error: str(fx.error),
    usage: { promptTokens: num(final.total_prompt_tokens), completionTokens: num(final.total_completion_tokens), contextTokens: num(fx.context_tokens) },
    durationMs: num(fx.duration_ms),
  };
}

/** A plain list of chat messages (OpenAI shape) as turns: each assistant message is a turn, tool/user replies its observations. */
export function messagesToView(v: unknown): Json {
  const messages = (Array.isArray(v) ? v : (obj(v)?.messages as unknown[]) ?? []).map(obj).filter((m): m is Json => m !== null);
  const turns: Json[] = [];
  let instruction = "";
  for (const m of messages) {
    const role = str(m.role);
    if (role === "assistant") {
      const calls = (Array.isArray(m.tool_calls) ? m.tool_calls : []).map(obj).filter((c): c is Json => c !== null);
      const command = (c: Json) => {
        const fn = obj(c.function) ?? {};
        const args = str(fn.arguments);
        try {
          const parsed = obj(JSON.parse(args ?? ""));
          return str(parsed?.command) ?? str(parsed?.cmd) ?? args ?? "";
        } catch {
          return args ?? "";
        }
      };
      turns.push({
        index: turns.length,
        model: { content: text(m.content), reasoning: str(m.reasoning_content) ?? str(m.reasoning), finishReason: "stop", usage: {}, retries: 0 },
        toolCall: calls[0] ? { id: str(calls[0].id), command: command(calls[0]) } : undefined,
        extraCalls: calls.length > 1 ? calls.slice(1).map((c) => ({ id: str(c.id), command: command(c) })) : undefined,
        executions: [] as Json[],
        _calls: calls,
      });
    } else if ((role === "tool" || role === "user") && turns.length) {
      const last = turns[turns.length - 1]!;
      const calls = last._calls as Json[];
      const call = calls.find((c) => c.id === m.tool_call_id) ?? calls[(last.executions as Json[]).length];
      (last.executions as Json[]).push({ command: call ? str(obj(call.function)?.name) ?? "" : role === "user" ? "(user message)" : "", observation: text(m.content) });
    } else if (role === "user" && !instruction) instruction = text(m.content);
  }
  for (const t of turns) delete t._calls;
  return { schema: "view/messages", task: { name: "", instruction }, agent: null, model: {}, steps: turns, exitStatus: "unknown", usage: {} };
}
