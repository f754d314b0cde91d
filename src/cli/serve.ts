// `tmax serve`: the tasks of a dataset as an RL environment on OpenEnv's wire protocol (src/serve/).
// Only the options are loaded with the CLI; the server and its dependencies load when the command runs.
import { Option, type Command } from "commander";
import { addAgentOptions, addModelOptions, addSandboxOptions, toInt } from "./options.js";
import type { ServeCliOptions } from "./serveStart.js";

export type { ServeCliOptions };


/** The command's options (registered by main.ts). */
export function serveCommandOptions(cmd: Command): Command {
  return addSandboxOptions(
    addAgentOptions(
      addModelOptions(
        cmd
          .requiredOption("-d, --dataset <dir|name@version>", "the tasks to serve: a directory, or a registry dataset like terminal-bench@2.0")
          .option("--registry <url|file>", "dataset registry in Harbor's format (env TMAX_REGISTRY)")
          .option("--host <host>", "address to listen on (beyond loopback a --token is required)", "127.0.0.1")
          .option("--port <port>", "port (OpenEnv's default)", toInt, 8000)
          .option("--token <token>", "shared secret clients present (Bearer header, ws://user:TOKEN@host, or ?token=); prefer env TMAX_SERVE_TOKEN")
          .option("--max-sessions <n>", "sessions at a time (each holds at most one sandbox); more are refused at once as busy", toInt, 8)
          .option("--idle-timeout <sec>", "close a session (and remove its sandbox) after this long without a message; 0 = never", toInt, 600)
          .addOption(new Option("--action-set <set>", "what a reset that names none speaks: tb2 (OpenEnv's tbench2_env actions) or harness (one Tmax model turn per step)").choices(["tb2", "harness"]).default("tb2"))
          .option("--job-dir <dir>", "where trials and episode records go (default jobs/serve-<time>)")
          .option("--timeout-multiplier <x>", "scale every task timeout", Number.parseFloat, 1)
          .option("--agent-timeout-multiplier <x>", "scale the agent timeout", Number.parseFloat)
          .option("--verifier-timeout-multiplier <x>", "scale the verifier timeout", Number.parseFloat)
          .option("--build-timeout-multiplier <x>", "scale the environment build timeout", Number.parseFloat)
          .addOption(new Option("--agent-timeout <when>", "harness episodes: task (the task's agent timeout; eval default) or none (train default, as in training)").choices(["task", "none"]))
          .option("--cpus <n>", "CPU cap per container (default: the task's; train: none)", Number.parseFloat)
          .option("--memory-mb <n>", "memory per container in MB (default: the task's; train: 4096)", toInt),
      ),
    ),
  );
}

export async function serveCommand(o: ServeCliOptions): Promise<number> {
  const { serve } = await import("./serveStart.js");
  return serve(o);
}
