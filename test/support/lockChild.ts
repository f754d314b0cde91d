// A process that takes job-dir locks on request, for the lock tests. Each stdin line is a command:
// `lock DIR` (answers `won` or `lost <the error>`), `release` (answers `released`), `exit` (exits at once,
// holding whatever it holds).
import { createInterface } from "node:readline";
import { lockJobDir } from "../../src/jobs/lock.js";

let release: (() => Promise<void>) | undefined;
for await (const line of createInterface({ input: process.stdin })) {
  const space = line.indexOf(" ");
  const word = space < 0 ? line : line.slice(0, space);
  if (word === "lock") {
    try {
      release = await lockJobDir(line.slice(space + 1));
      process.stdout.write("won\n");
    } catch (err) {
      process.stdout.write(`lost ${(err as Error).message.replace(/\n/g, "\\n")}\n`);
    }
  } else if (word === "release") {
    await release?.();
    release = undefined;
    process.stdout.write("released\n");
  } else if (word === "exit") {
    process.exit(0);
  }
}
