// `--prompts FILE`: a YAML prompt file in the schema of the Tmax authors' harness (also mini-swe-agent's
// config layout where it maps). Loaded as the reference loads it: YAML 1.1 (PyYAML's safe_load), the
// system template sent as is, `{{task}}` and `{{error}}` replaced literally.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { REFERENCE_OBSERVATION_FALLBACKS } from "./observation.js";
import { DEFAULT_PROMPTS, fillPlaceholder, type PromptSet } from "./prompts.js";
import { pyStrip } from "./pytext.js";

const ObservationBlock = z
  .object({
    max_chars: z.number().int().positive(),
    head_chars: z.number().int().min(0),
    tail_chars: z.number().int().min(0),
    too_long_hint: z.string(),
  })
  .partial();

const Templates = {
  system_template: z.string().optional(),
  instance_template: z.string().optional(),
  format_error_template: z.string().optional(),
};

/** The prompt file. Keys other than these are ignored (a mini-swe-agent config carries many more). */
export const PromptFileSchema = z.object({
  ...Templates,
  observation: ObservationBlock.optional(),
  // tmax extensions: the bash tool's descriptions, and one error text for every eval format error
  tool_description: z.string().min(1).optional(),
  command_description: z.string().min(1).optional(),
  format_error_text: z.string().optional(),
  // mini-swe-agent's layout: templates nested under `agent:` (format_error_template also under `model:`)
  agent: z.object(Templates).optional(),
  model: z.object({ format_error_template: z.string().optional() }).optional(),
});
export type PromptFile = z.infer<typeof PromptFileSchema>;

export class PromptFileError extends Error {
  constructor(path: string, why: string) {
    super(`prompt file ${path}: ${why}`);
    this.name = "PromptFileError";
  }
}

/** Reads, checks and compiles a prompt file; any problem is one line naming the file and the key. */
export function loadPromptFile(path: string, opts: { toolDescription?: string } = {}): PromptSet {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new PromptFileError(path, code === "ENOENT" ? "no such file" : `cannot be read (${code ?? String(e)})`);
  }
  let data: unknown;
  try {
    data = parseYaml(bytes.toString("utf8"), { version: "1.1" });
  } catch (e) {
    const first = (e instanceof Error ? e.message : String(e)).split("\n")[0];
    throw new PromptFileError(path, `not valid YAML: ${first}`);
  }
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  return promptSetFromData(data, { path, sha256 }, opts);
}

/** A PromptSet from parsed prompt-file data (exported for tests and for files read elsewhere). */
export function promptSetFromData(
  data: unknown,
  source: { path: string; sha256: string },
  opts: { toolDescription?: string } = {},
): PromptSet {
  const fail = (why: string): never => {
    throw new PromptFileError(source.path, why);
  };
  if (data === null || typeof data !== "object" || Array.isArray(data)) fail("must be a YAML mapping of keys to values");
  const checked = PromptFileSchema.safeParse(data);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    fail(`${issue.path.join(".") || "(top level)"}: ${issue.message}`);
  }
  const file = checked.data!;

  const pick = (name: "system_template" | "instance_template" | "format_error_template"): string | undefined => {
    const candidates: [string, string | undefined][] = [
      [name, file[name]],
      [`agent.${name}`, file.agent?.[name]],
      ...(name === "format_error_template" ? [["model.format_error_template", file.model?.format_error_template] as [string, string | undefined]] : []),
    ];
    const given = candidates.filter(([, v]) => v !== undefined);
    if (given.length > 1) fail(`${given.map(([k]) => k).join(" and ")} are both set; keep one`);
    return given[0]?.[1];
  };

  const system = pick("system_template") ?? fail("system_template is missing");
  const instance = pick("instance_template") ?? fail("instance_template is missing");
  if (!instance.includes("{{task}}")) {
    fail("instance_template has no {{task}} (written exactly so, without spaces: it is replaced literally)");
  }
  const formatErrorTemplate = pick("format_error_template");
  if (formatErrorTemplate !== undefined && !formatErrorTemplate.includes("{{error}}")) {
    fail("format_error_template has no {{error}} (written exactly so, without spaces: it is replaced literally)");
  }
  // a key the file lacks takes the reference's fallback (`.get(key, default)` in both harnesses), never our text
  const observation = { ...REFERENCE_OBSERVATION_FALLBACKS };
  const block = file.observation ?? {};
  if (block.max_chars !== undefined) observation.maxChars = block.max_chars;
  if (block.head_chars !== undefined) observation.headChars = block.head_chars;
  if (block.tail_chars !== undefined) observation.tailChars = block.tail_chars;
  if (block.too_long_hint !== undefined) observation.tooLongHint = block.too_long_hint;

  return {
    system,
    instance: (task) => fillPlaceholder(instance, "task", pyStrip(task)),
    formatError: formatErrorTemplate !== undefined ? (error) => fillPlaceholder(formatErrorTemplate, "error", error) : DEFAULT_PROMPTS.formatError,
    ...(file.format_error_text !== undefined ? { formatErrorText: file.format_error_text } : {}),
    observation,
    toolDescription: opts.toolDescription ?? file.tool_description ?? DEFAULT_PROMPTS.toolDescription,
    ...(file.command_description !== undefined ? { commandDescription: file.command_description } : {}),
    source,
  };
}

/** The prompt set for a run: the file when given, else ours; `--tool-description` wins over both. */
export function resolvePrompts(opts: { prompts?: string; toolDescription?: string }): PromptSet {
  if (opts.prompts) return loadPromptFile(opts.prompts, { toolDescription: opts.toolDescription });
  return opts.toolDescription ? { ...DEFAULT_PROMPTS, toolDescription: opts.toolDescription } : DEFAULT_PROMPTS;
}
