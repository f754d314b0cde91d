// Secrets never reach files, logs, the model or the explorer: URLs lose their credentials, known secret values
// (registered keys and every set env var named like a key/token/secret) and common key shapes are masked.

/** Drops user:password@ and query parameters that look like keys from a URL. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = "";
      u.password = "";
    }
    for (const key of [...u.searchParams.keys()]) {
      if (/key|token|secret|auth/i.test(key)) u.searchParams.set(key, "REDACTED");
    }
    return u.toString().replace(/\/$/, url.endsWith("/") ? "/" : "");
  } catch {
    return url;
  }
}

const secrets = new Set<string>();

/** Names of host env vars whose values are secrets (tmax's own keys and anything named like a credential). */
export const SECRET_ENV_NAME = /KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL/i;
/** tmax's own keys: never expanded into a task, even when passed with --pass-env. */
export const TMAX_OWN_KEYS = ["TMAX_API_KEY", "OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "DAYTONA_API_KEY"];

/** Registers a secret value (e.g. the API key) so that `redactSecrets` masks it anywhere. */
export function registerSecret(value: string | undefined): void {
  if (value && value.length >= 6 && value !== "EMPTY") secrets.add(value);
}

function scanEnv(): void {
  // re-read each time (cheap): variables set after start, e.g. by an embedding program, count too
  for (const [name, value] of Object.entries(process.env)) {
    if (TMAX_OWN_KEYS.includes(name) || SECRET_ENV_NAME.test(name)) registerSecret(value);
  }
}

/** The known secret values (registered + secret-named env vars), longest first. */
export function knownSecrets(): string[] {
  scanEnv();
  return [...secrets].sort((a, b) => b.length - a.length);
}

/** Masks every known secret value. */
export function redactSecrets(text: string): string {
  let out = text;
  for (const s of knownSecrets()) if (out.includes(s)) out = out.split(s).join("***");
  return out;
}

/** Shapes of common credentials (OpenAI, Hugging Face, GitHub, AWS, Slack, bearer headers, private keys). */
const KEY_PATTERNS: RegExp[] = [
  /\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}/g,
  /\bhf_[A-Za-z0-9]{20,}/g,
  /\bgh[pousr]_[A-Za-z0-9]{30,}/g,
  /\bgithub_pat_[A-Za-z0-9_]{30,}/g,
  /\bAKIA[0-9A-Z]{16}\b/g,
  /\bxox[abprs]-[A-Za-z0-9-]{10,}/g,
  /(\bBearer\s+)[A-Za-z0-9._~+/=-]{20,}/gi,
  pemPrivateKey(),
];

/**
 * A PEM private key block, bounded: the BEGIN line, then at most 256 lines that look like a key (base64 of up to
 * 16384 characters, or an RFC 1421 header such as `Proc-Type: 4,ENCRYPTED`), then the END line when there is one.
 * Line breaks are real ones or JSON's `\n` escapes (explorer answers and the report's data are JSON). Before, an
 * unterminated block ran to the end of the text (`[\s\S]*?…|$`): the HTML report shrank from 243 KB to 17 KB and the
 * explorer's JSON answer was cut mid-string. Each line is matched atomically (a lookahead and a back-reference), so
 * nothing backtracks, and a line that is not all key (`AFTER-KEY`, `ok done`), a quote, `<`, `&` or a lone backslash
 * ends the block: what is left stays valid JSON/HTML.
 */
function pemPrivateKey(): RegExp {
  const nl = String.raw`(?:\r?\n|\\r\\n|\\n)`;
  const line = String.raw`[A-Za-z][A-Za-z0-9-]{0,40}:[ \t]?[A-Za-z0-9,+/= -]{0,200}|[A-Za-z0-9+/=]{1,16384}`;
  const label = "[A-Z0-9 ]{0,40}PRIVATE KEY";
  // a line counts only as a whole: not followed by more of the characters a key or header line holds
  return new RegExp(`-----BEGIN ${label}-----(?:${nl}+(?=(${line})(?![A-Za-z0-9+/=:,. -]))\\1){0,256}(?:${nl}-----END ${label}-----)?`, "g");
}

/** Known values and common key shapes masked: for anything shown to a person (explorer, reports). */
export function redactAll(text: string): string {
  let out = redactSecrets(text);
  for (const re of KEY_PATTERNS) out = out.replace(re, (m, prefix?: unknown) => (typeof prefix === "string" && /^Bearer/i.test(prefix) ? `${prefix}***` : "***"));
  return out;
}
