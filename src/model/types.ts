// Contracts of the model layer: what the agent sends and what one model turn gives back.

export type Profile = "eval" | "train";

/** Sampling and limits that differ between the two profiles Tmax was trained/evaluated with. */
export const PROFILES: Record<Profile, { temperature: number; topP: number }> = {
  eval: { temperature: 0.7, topP: 0.95 },
  train: { temperature: 1.0, topP: 1.0 },
};

export interface ModelConfig {
  baseUrl: string; // e.g. http://localhost:8008/v1
  model: string; // served model name, e.g. tmax-9b
  apiKey?: string; // never written anywhere
  temperature: number;
  topP: number;
  maxTokens: number; // per turn, 16384 by default
  timeoutMs: number; // per request
  maxRetries: number; // on 429, 5xx and connection errors, with exponential backoff
  retryBaseMs?: number; // first backoff delay (doubles per retry, capped at 30 s); default 1000
  logprobs: boolean; // ask for per-token logprobs
  tokenIds: boolean; // ask vLLM for prompt/completion token ids (return_token_ids)
  extraBody?: Record<string, unknown>;
  /** Several servers of the same model (baseUrl is the first): requests are routed by src/model/pool.ts. */
  baseUrls?: string[];
}

export const DEFAULT_BASE_URL = "http://localhost:8008/v1";
export const DEFAULT_MODEL = "tmax-9b";

/** One bash call the model asked for. `source` says whether vLLM's parser produced it or we parsed XML. */
export interface ToolCall {
  id: string;
  name: string;
  arguments: Record<string, unknown>;
  source: "tool_calls" | "xml";
}

export interface TokenLogprob {
  token: string;
  logprob: number;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  /** Of promptTokens, those served from the server's prompt cache (usage.prompt_tokens_details.cached_tokens), when it says. */
  cachedTokens?: number;
}

/** OpenAI chat message shapes as we send them (role tool replies carry the call id). */
export type ChatMessage =
  | { role: "system"; content: string }
  | { role: "user"; content: string }
  | {
      role: "assistant";
      content: string;
      tool_calls?: { id: string; type: "function"; function: { name: string; arguments: string } }[];
    }
  | { role: "tool"; tool_call_id: string; content: string };

export interface ModelTurn {
  /** The assistant message exactly as it goes back into the history (thinking kept). */
  message: Extract<ChatMessage, { role: "assistant" }>;
  /** Text content as returned (may start with thinking and `</think>`). */
  content: string;
  /** Separate reasoning text when the server runs a reasoning parser (merged into message.content). */
  reasoning?: string;
  toolCalls: ToolCall[];
  /** Why a call in the content could not be parsed (empty when all is well). */
  parseErrors: string[];
  finishReason: string;
  usage: Usage;
  logprobs?: TokenLogprob[];
  promptTokenIds?: number[];
  completionTokenIds?: number[];
  latencyMs: number;
  /** Retries this turn needed (429/5xx/connection). */
  retries: number;
}

export interface ModelClient {
  readonly config: ModelConfig;
  /** One chat completion; `maxTokens` lowers the configured per-turn max_tokens, `toolDescription` / `commandDescription` replace the bash tool's descriptions. */
  complete(
    messages: ChatMessage[],
    opts?: { signal?: AbortSignal; maxTokens?: number; toolDescription?: string; commandDescription?: string },
  ): Promise<ModelTurn>;
  /** GET /models: served model ids and, when vLLM reports it, max_model_len. */
  listModels(opts?: { signal?: AbortSignal }): Promise<{ id: string; maxModelLen?: number }[]>;
}

/** Errors of the model layer carry a one-line message fit for a terminal. */
export class ModelError extends Error {
  /** The model server failed, not the agent: the trial is retried and left out of the infra-clean score. */
  readonly infrastructure: boolean;
  constructor(
    message: string,
    readonly kind: "unreachable" | "model_not_found" | "http" | "timeout" | "context_length" | "bad_response",
    readonly status?: number,
  ) {
    super(message);
    this.name = "ModelError";
    this.infrastructure = ModelError.isInfrastructure(kind);
  }

  /** The kinds that are the server's failure (a missing model, a too-long context or a bad answer are not). */
  static isInfrastructure(kind: string): boolean {
    return kind === "unreachable" || kind === "timeout" || kind === "http";
  }
}
