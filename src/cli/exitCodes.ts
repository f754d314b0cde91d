// The exit codes of every tmax command (docs/cli.md lists them; test/unit/cli/exit-codes.test.ts runs each row).
import { FAULT_EXIT_CODES } from "../sandbox/cleanup.js";

export const EXIT = {
  /** The command did what it was asked (an eval whose trials all have a result, a check without errors). */
  ok: 0,
  /** It ran and failed: an error, a trial that errored, an eval stopped by --max-cost, a check that found errors, a guard that is not in place. */
  failure: 1,
  /** The command line was wrong (unknown command or option, missing or invalid argument, bad choice, flags that exclude each other); nothing ran. */
  usage: 2,
  /** Stopped by SIGHUP; what was finished is kept (resume continues). */
  hangup: FAULT_EXIT_CODES.SIGHUP,
  /** Stopped by SIGINT (Ctrl-C); what was finished is kept. */
  interrupted: FAULT_EXIT_CODES.SIGINT,
  /** Its output went away (`tmax … | head`): SIGPIPE's code. */
  outputGone: FAULT_EXIT_CODES.EPIPE,
  /** Stopped by SIGTERM; what was finished is kept. */
  terminated: FAULT_EXIT_CODES.SIGTERM,
} as const;

/** A wrong command line found after parsing (flags that exclude each other, a count that does not match): exit 2. */
export class UsageError extends Error {
  readonly exitCode = EXIT.usage;
}
