// Before any container starts: is the endpoint reachable and is the model served? One-line errors.
import { ModelError, type ModelClient } from "./types.js";
import type { TokenClient } from "./tokens.js";

export async function preflightModel(client: ModelClient, signal?: AbortSignal): Promise<{ maxModelLen?: number }> {
  const models = await client.listModels({ signal });
  const served = models.find((m) => m.id === client.config.model);
  if (!served) {
    throw new ModelError(
      `model '${client.config.model}' is not served at ${client.config.baseUrl}; served: ${models.map((m) => m.id).join(", ") || "none"} (pass --model)`,
      "model_not_found",
    );
  }
  return { maxModelLen: served.maxModelLen };
}

/** What one short test turn shows about the server: how tool calls arrive, and whether RL data can be had. */
export interface ModelProbe {
  toolCallSource: "tool_calls" | "xml" | null;
  logprobs: boolean;
  tokenIds: boolean;
}

export async function probeModel(client: ModelClient, signal?: AbortSignal): Promise<ModelProbe> {
  const turn = await client.complete(
    [
      { role: "system", content: "You call tools." },
      { role: "user", content: "Call the bash tool with the command `echo hi`. Reply with the call only." },
    ],
    { signal },
  );
  return {
    toolCallSource: turn.toolCalls[0]?.source ?? null,
    logprobs: Boolean(turn.logprobs?.length),
    tokenIds: Boolean(turn.promptTokenIds?.length && turn.completionTokenIds?.length),
  };
}

/** The train profile needs vLLM's /tokenize and token ids + logprobs from /v1/completions; one 1-token probe. */
export async function requireTokenSupport(tokens: TokenClient, signal?: AbortSignal): Promise<void> {
  const { ids } = await tokens.tokenizeChat([{ role: "user", content: "hi" }], [], { signal });
  await tokens.sample(ids, { maxTokens: 1, seed: 0, signal });
}

/** What the train profile asks of the server (training's loop is token-in/token-out, never chat completions). */
export const TRAIN_SERVER_API =
  "vLLM's POST /tokenize (messages + tools) and POST /v1/completions with a token-id prompt, return_token_ids and logprobs";

/** requireTokenSupport, with a failure told as one line naming the API the train profile needs. */
export async function requireTrainServer(tokens: TokenClient, signal?: AbortSignal): Promise<void> {
  try {
    await requireTokenSupport(tokens, signal);
  } catch (e) {
    if (!(e instanceof ModelError) || e.kind === "unreachable") throw e;
    const why = e.message.split("\n")[0];
    throw new ModelError(`--profile train runs token-in/token-out and needs ${TRAIN_SERVER_API}; ${why}`, e.kind, e.status);
  }
}
