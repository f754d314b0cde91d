// What a model's tokens cost, from prices the user gives (a table file or flags), in USD per million tokens.
// tmax knows no prices of its own: a model without one has no cost (null), never a guessed one.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";

/** USD per million tokens; `cached_input` for prompt tokens the server reports as cached (default: `input`). */
export const ModelPrice = z.strictObject({
  input: z.number().finite().nonnegative(),
  output: z.number().finite().nonnegative(),
  cached_input: z.number().finite().nonnegative().optional(),
});
export type ModelPrice = z.infer<typeof ModelPrice>;

/** A price table file: served model name → its prices, e.g. `{"gpt-4.1": {"input": 2, "output": 8, "cached_input": 0.5}}`. */
export const PriceTable = z.record(z.string().min(1), ModelPrice);
export type PriceTable = z.infer<typeof PriceTable>;

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
  /** Of promptTokens, those the server served from its cache; undefined when it does not say. */
  cachedTokens?: number;
}

/** The cost of `usage` in USD: uncached prompt tokens at `input`, cached ones at `cached_input`, completion at `output`. */
export function costUsd(usage: TokenUsage, price: ModelPrice): number {
  const cached = Math.min(Math.max(usage.cachedTokens ?? 0, 0), usage.promptTokens);
  const cachedPrice = price.cached_input ?? price.input;
  return ((usage.promptTokens - cached) * price.input + cached * cachedPrice + usage.completionTokens * price.output) / 1e6;
}

/** Reads a JSON or YAML price table; one line naming the file and the first problem otherwise. */
export function loadPriceTable(file: string): PriceTable {
  let data: unknown;
  try {
    data = parseYaml(readFileSync(file, "utf8")); // YAML reads JSON too
  } catch (err) {
    throw new Error(`cannot read price table ${file}: ${(err as Error).message.split("\n")[0]}`);
  }
  const parsed = PriceTable.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`price table ${file} at [${issue.path.join(".")}]: ${issue.message} (expected {"<model>": {"input": USD/Mtok, "output": USD/Mtok, "cached_input"?: USD/Mtok}})`);
  }
  return parsed.data;
}

export interface PriceFlags {
  priceTable?: string;
  priceInput?: number;
  priceOutput?: number;
  priceCachedInput?: number;
}

/**
 * The price of `model` from the flags: `--price-input`/`--price-output` (with `--price-cached-input`) win over
 * `--price-table`; undefined when neither names one (then costs stay null). Half a price is refused in one line.
 */
export function priceFromFlags(flags: PriceFlags, model: string | undefined): ModelPrice | undefined {
  const { priceInput: input, priceOutput: output, priceCachedInput: cached } = flags;
  if (input !== undefined || output !== undefined || cached !== undefined) {
    if (input === undefined || output === undefined) throw new Error("--price-input and --price-output go together (USD per million tokens)");
    const parsed = ModelPrice.safeParse({ input, output, ...(cached !== undefined ? { cached_input: cached } : {}) });
    if (!parsed.success) throw new Error(`prices must be finite numbers ≥ 0 (USD per million tokens); got input ${input}, output ${output}${cached !== undefined ? `, cached input ${cached}` : ""}`);
    return parsed.data;
  }
  if (!flags.priceTable || !model) return undefined;
  return loadPriceTable(flags.priceTable)[model];
}
