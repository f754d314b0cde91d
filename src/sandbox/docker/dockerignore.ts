// .dockerignore, matched as Docker does. The matching is @balena/dockerignore (a port of moby's fileutils, the
// same library dockerode uses for its own build contexts); around it, the two places where that port lags
// today's moby/patternmatcher: regexp characters that mean nothing to filepath.Match (`+ ( ) | { }`) are
// literal there, and a bad pattern (`[`, a lone `!`) is an error, not a silent no-op. Docker is case-sensitive
// on Linux, so the port's default (ignore case) is turned off.
import fs from "node:fs/promises";
import path from "node:path";
import dockerignore from "@balena/dockerignore";
import { listTree, type LocalEntry } from "../bytes/tarball.js";

/** A parsed .dockerignore: `ignored(rel)` for a slash-separated path relative to the context. */
export interface DockerIgnore {
  ignored(rel: string): boolean;
  /** Whether the walk must still go into an ignored dir, because an exception (`!…`) may re-include a file in it. */
  mayReinclude(dirRel: string): boolean;
}

// a CommonJS module whose typings declare a default export: the factory is both module.exports and its .default
const ignore = dockerignore.default;

const LITERAL_IN_MOBY = new Set(["+", "(", ")", "|", "{", "}"]);

/** Escapes what moby's compile escapes and the port does not; a `\x` the user wrote stays as written. */
function escapeForPort(pattern: string): string {
  let out = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\" && i + 1 < pattern.length) {
      out += c + pattern[++i];
    } else out += LITERAL_IN_MOBY.has(c) ? `\\${c}` : c;
  }
  return out;
}

/** The patterns of a .dockerignore text, as moby's ReadAll keeps them: `#` lines and blank lines dropped, trimmed. */
function readPatterns(text: string): { line: number; pattern: string }[] {
  const out: { line: number; pattern: string }[] = [];
  text.replace(/^\uFEFF/, "").split(/\r?\n/).forEach((raw, i) => {
    if (raw.startsWith("#")) return;
    const pattern = raw.trim();
    if (pattern) out.push({ line: i + 1, pattern });
  });
  return out;
}

/** Parses a .dockerignore text; a pattern Docker would refuse throws one line naming it. */
export function parseDockerIgnore(text: string): DockerIgnore {
  const patterns = readPatterns(text);
  const matcher = ignore({ ignorecase: false });
  const exceptions: string[] = [];
  for (const { line, pattern } of patterns) {
    const negate = pattern.startsWith("!");
    const body = negate ? pattern.slice(1).trim() : pattern;
    if (!body) throw new Error(`.dockerignore line ${line}: "!" alone is not a pattern (Docker refuses it)`);
    const one = ignore({ ignorecase: false }).add(escapeForPort(pattern));
    try {
      one.ignores("probe"); // compiles the pattern's regexp
    } catch {
      throw new Error(`.dockerignore line ${line}: syntax error in pattern ${JSON.stringify(pattern)}`);
    }
    matcher.add(one);
    if (negate) exceptions.push(body.replace(/^(\.?\/)+/, ""));
  }
  // As moby's walk: with no exceptions an ignored dir is skipped whole; an exception that names a path under it
  // (or has a wildcard, which might) keeps the walk going inside.
  const wild = exceptions.some((e) => /[*?[\\]/.test(e));
  return {
    ignored: (rel) => matcher.ignores(rel),
    mayReinclude: (dirRel) => wild || exceptions.some((e) => `${e}/`.startsWith(`${dirRel}/`)),
  };
}

/**
 * The entries of a build context that go to the engine: everything under `contextDir` that its .dockerignore
 * does not exclude, sorted; `keep` (the Dockerfile's own path) is sent whatever the patterns say, as Docker does.
 */
export async function contextEntries(contextDir: string, keep: string): Promise<LocalEntry[]> {
  const text = await fs.readFile(path.join(contextDir, ".dockerignore"), "utf8").catch(() => "");
  if (!text) return listTree(contextDir);
  const rules = parseDockerIgnore(text);
  const excluded = (rel: string) => rel !== keep && rules.ignored(rel);
  const walked = await listTree(contextDir, (rel, isDir) => excluded(rel) && !(isDir && rules.mayReinclude(rel)));
  return walked.filter((e) => !excluded(e.rel));
}
