// The chat completions protocol (eval, and train over an OpenAI-compatible server): the context is the message
// list, each turn one /v1/chat/completions request, observations go back as tool messages (the loop appends
// them). What this file owns: the request, the token budget (eval: none, the server's context-length error
// ends the episode; train: maxTotalTokens over the whole context) and the step's record of a turn.
import type { ModelClient, ModelTurn, Profile } from "../model/types.js";
import { ModelError } from "../model/types.js";
import { EpisodeEnd, EVAL_RULES, runEpisodeWith, TRAIN_RULES, type EpisodeBase, type EpisodeContext, type Protocol } from "./loop.js";
import type { Trajectory, TrajectoryStep } from "./schema.js";
import { redactUrl } from "../util/redact.js";

export interface EpisodeInput extends EpisodeBase {
  model: ModelClient;
  profile: Profile;
}

/** One episode over chat completions, under the profile's harness rules. */
export function runEpisode(input: EpisodeInput): Promise<Trajectory> {
  return runEpisodeWith(chatProtocol(input.model, input.profile), input);
}

export function chatProtocol(model: ModelClient, profile: Profile): Protocol {
  let ctx: EpisodeContext;
  return {
    profile,
    rules: profile === "eval" ? EVAL_RULES : TRAIN_RULES,
    async start(context) {
      ctx = context;
      return undefined;
    },
    // eval keeps no token budget of its own: the same max_tokens every turn, and the server's
    // context-length error ends the episode (as the released eval runs did). train shrinks max_tokens.
    budget() {
      if (profile !== "train") return undefined;
      const maxTokens = ctx.limits.maxTotalTokens - ctx.usage.contextTokens;
      if (maxTokens <= 0) throw new EpisodeEnd("token_limit");
      return maxTokens;
    },
    async next(_index, maxTokens) {
      const { prompts } = ctx;
      const turn = await query(model, ctx, {
        maxTokens,
        toolDescription: prompts.toolDescription,
        ...(prompts.commandDescription !== undefined ? { commandDescription: prompts.commandDescription } : {}),
      });
      return { turn, record: turnRecord(turn) };
    },
    outOfTokens: (turn) => profile === "train" && turn.finishReason === "length" && ctx.usage.contextTokens >= ctx.limits.maxTotalTokens,
    async observed() {
      if (profile === "train" && ctx.usage.contextTokens >= ctx.limits.maxTotalTokens) throw new EpisodeEnd("token_limit");
    },
    async submitted() {},
    describe: () => ({
      model: {
        name: model.config.model,
        baseUrl: redactUrl(model.config.baseUrl),
        temperature: model.config.temperature,
        topP: model.config.topP,
        maxTokens: model.config.maxTokens,
      },
    }),
    ended() {},
  };
}

async function query(
  model: ModelClient,
  ctx: EpisodeContext,
  opts: { maxTokens?: number; toolDescription: string; commandDescription?: string },
): Promise<ModelTurn> {
  try {
    return await model.complete(ctx.messages, { signal: ctx.signal, ...opts });
  } catch (e) {
    if (e instanceof ModelError && e.kind === "context_length") throw new EpisodeEnd("token_limit", e.message);
    throw e;
  }
}

function turnRecord(turn: ModelTurn): TrajectoryStep["model"] {
  return {
    content: turn.message.content,
    ...(turn.reasoning !== undefined ? { reasoning: turn.reasoning } : {}),
    finishReason: turn.finishReason,
    usage: turn.usage,
    latencyMs: turn.latencyMs,
    retries: turn.retries,
    ...(turn.logprobs ? { logprobs: turn.logprobs } : {}),
    ...(turn.promptTokenIds ? { promptTokenIds: turn.promptTokenIds } : {}),
    ...(turn.completionTokenIds ? { completionTokenIds: turn.completionTokenIds } : {}),
  };
}
