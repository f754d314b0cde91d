// `tmax explore`: the local web UI over job dirs and rollout shards, until Ctrl-C.
import path from "node:path";
import type { Command } from "commander";
import { toInt } from "./options.js";

export function registerExplore(program: Command): void {
  program
    .command("explore <dir>")
    .description("local web UI over job dirs and rollout shards (served on 127.0.0.1)")
    .option("--port <port>", "port", toInt, 8080)
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .action(async (dir: string, o: { port: number; host: string }) => {
      const { startExplorer } = await import("../explore/server.js");
      const server = await startExplorer({ dir: path.resolve(dir), port: o.port, host: o.host });
      console.log(`tmax explore: ${server.url}  (Ctrl-C to stop)`);
      const stop = () => void server.close().then(() => process.exit(0));
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
}
