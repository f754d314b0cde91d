// The Dockerfile parser against tricky files, with the expected readings taken from Docker's documented rules
// (Dockerfile reference: parser directives, escape, comments and continuations, heredocs, exec form, environment
// replacement) and BuildKit's parser; then the build refusals built on it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { argWords, bothReadings, parseDockerfile, shellWord, type Instruction } from "../../../src/sandbox/dockerfile.js";
import { baseImages, dockerfileRefusal, refusedAddSource, refusedRunFlag, rewriteFromLines } from "../../../src/sandbox/docker/build.js";

const brief = (i: Instruction) => [i.line, i.keyword, ...i.flags, i.json ? JSON.stringify(i.json) : i.args];
const read = (text: string, heredocs = true) => parseDockerfile(text, { heredocs }).instructions.map(brief);

test("continuations: the escape and trailing blanks are removed and the next line appended as is; comments and blank lines inside are dropped", () => {
  assert.deepEqual(read("RUN echo hello \\\nworld\n"), [[1, "RUN", "echo hello world"]]);
  // no space is added: a flag can be split across lines
  assert.deepEqual(read("RUN --net\\\nwork=host id\n"), [[1, "RUN", "--network=host", "id"]]);
  assert.deepEqual(read("RUN echo hello \\\n# comment\n  \nworld\n"), [[1, "RUN", "echo hello world"]]);
  assert.deepEqual(read("RUN a \\  \t\n b\n"), [[1, "RUN", "a  b"]]);
  // leading blanks before instructions and comments, CRLF line ends and a BOM
  assert.deepEqual(read("\uFEFF        # this is a comment-line\r\n    RUN echo hello\r\nRUN echo world\r\n"), [[2, "RUN", "echo hello"], [3, "RUN", "echo world"]]);
  assert.deepEqual(read("from x\nOnBuild add a b\n"), [[1, "FROM", "x"], [2, "ADD", "a b"]]);
  assert.equal(parseDockerfile("ONBUILD ADD a b").instructions[0]!.onbuild, true);
});

test("parser directives: only at the very top, before any comment, blank line or instruction", () => {
  assert.equal(parseDockerfile("# escape=`\nFROM x\n").escape, "`");
  for (const d of ["#escape=`", "# escape =`", "#\tescape= `", "# escape = `", "#\t  eScApE=`"]) assert.equal(parseDockerfile(`${d}\nFROM x\n`).escape, "`", d);
  assert.equal(parseDockerfile("# About my dockerfile\n# escape=`\nFROM x\n").escape, "\\");
  assert.equal(parseDockerfile("# unknowndirective=value\n# escape=`\nFROM x\n").escape, "\\");
  assert.equal(parseDockerfile("\n# escape=`\nFROM x\n").escape, "\\");
  assert.equal(parseDockerfile("FROM x\n# escape=`\n").escape, "\\");
  assert.equal(parseDockerfile("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\n").escape, "`");
  // with the backtick, a backslash is literal (the reference's Windows example) and the backtick continues
  assert.deepEqual(read("# escape=`\nFROM windowsservercore\nCOPY testfile.txt c:\\\nRUN dir c:\\\nRUN a `\n b\n"), [
    [2, "FROM", "windowsservercore"], [3, "COPY", "testfile.txt c:\\"], [4, "RUN", "dir c:\\"], [5, "RUN", "a  b"],
  ]);
});

test("heredocs: RUN/COPY/ADD lines up to the terminator are content; without heredocs (podman 4.3) they are instructions", () => {
  const text = "FROM x\nRUN <<EOT bash\n  apt-get update\nADD http://h/x /x\nEOT\nCOPY <<-EOT /s.sh\n\techo hi\n\tEOT\nRUN <<FILE1 cat > f1 && <<\"FILE2\" cat > f2\nI am\nFILE1\nsecond\nFILE2\nRUN done\n";
  const p = parseDockerfile(text);
  assert.deepEqual(p.instructions.map((i) => [i.line, i.keyword]), [[1, "FROM"], [2, "RUN"], [6, "COPY"], [9, "RUN"], [14, "RUN"]]);
  assert.deepEqual(p.instructions[1]!.heredocs, [{ name: "EOT", chomp: false, body: "  apt-get update\nADD http://h/x /x" }]);
  assert.deepEqual(p.instructions[2]!.heredocs, [{ name: "EOT", chomp: true, body: "echo hi" }]);
  assert.deepEqual(p.instructions[3]!.heredocs.map((h) => [h.name, h.body]), [["FILE1", "I am"], ["FILE2", "second"]]);
  assert.deepEqual(read(text, false).filter((i) => i[1] === "ADD"), [[4, "ADD", "http://h/x /x"]]);
  assert.deepEqual(bothReadings(text).map((i) => i.keyword).filter((k) => k === "ADD"), ["ADD"]);
  // not a heredoc: `cat<<EOF` (the word does not start with <<) and the exec form
  assert.deepEqual(parseDockerfile("RUN cat<<EOF\nRUN b\n").instructions.length, 2);
});

test("builder flags: quotes and backslash escapes removed, `--` ends them; arguments in exec or shell form", () => {
  assert.deepEqual(read(`RUN --mount="type=bind,rw" --network=h'os't --x=a\\ b id`), [[1, "RUN", "--mount=type=bind,rw", "--network=host", "--x=a b", "id"]]);
  assert.deepEqual(read("RUN -- --network=host id"), [[1, "RUN", "--network=host id"]]);
  assert.deepEqual(read("RUN echo --network=host"), [[1, "RUN", "echo --network=host"]]);
  assert.deepEqual(read('ADD --chmod=644 ["a b.txt", "/dst/"]'), [[1, "ADD", "--chmod=644", '["a b.txt","/dst/"]']]);
  // not an array of strings: the shell form
  const notJson = parseDockerfile('ADD [ "a", ] /d').instructions[0]!;
  assert.equal(notJson.json, null);
  assert.deepEqual(argWords(notJson), ["[", '"a",', "]", "/d"]);
});

test("shell words: quotes, escapes and variables as Docker's environment replacement reads them", () => {
  assert.deepEqual(shellWord('"http://127.0.0.1:8080/k"', "\\"), { value: "http://127.0.0.1:8080/k", variables: [] });
  assert.deepEqual(shellWord("'a $b'", "\\"), { value: "a $b", variables: [] });
  assert.deepEqual(shellWord("\\$FOO", "\\"), { value: "$FOO", variables: [] });
  assert.deepEqual(shellWord("http:\\/\\/h", "\\"), { value: "http://h", variables: [] });
  assert.deepEqual(shellWord('"a\\"b\\$c\\d"', "\\"), { value: 'a"b$c\\d', variables: [] });
  assert.deepEqual(shellWord("${FOO:-x}/$BAR$", "\\"), { value: "/$", variables: ["FOO", "BAR"] });
  assert.deepEqual(shellWord('"$U"', "\\"), { value: "", variables: ["U"] });
  assert.deepEqual(shellWord("`$FOO\\x", "`"), { value: "$FOO\\x", variables: [] });
  assert.equal(shellWord('"http://h', "\\").error, "unterminated double quote");
  assert.equal(shellWord("${A", "\\").error, "missing '}' in a ${…} expansion");
});

test("ADD sources that the engine would fetch are refused, however they are written", () => {
  const refused = (body: string) => refusedAddSource(`FROM x\n${body}\n`);
  for (const body of [
    'ADD "http://127.0.0.1:8080/k" /k',
    "ADD 'http://127.0.0.1:8080/k' /k",
    "ADD http:\\/\\/127.0.0.1/k /k",
    'ADD h"ttp://"127.0.0.1/k /k',
    'ADD --chmod=644 --checksum=sha256:00 "HTTPS://169.254.169.254/latest" /m',
    'ADD ["\\"http://127.0.0.1/k\\"", "/k"]',
    "ADD ht\\\ntp://127.0.0.1/x /x",
    'ADD "$U" /k',
    "ADD ${U:-http://h/} /k",
    "ADD foo@127.0.0.1:repo /r",
    "ADD git@github.com:o/r.git /r",
    "ADD github.com/moby/buildkit /b",
    'ADD "http://h /k',
    "onbuild add http://h/x /x",
    "RUN <<EOF\nADD http://127.0.0.1/k /k\nEOF",
  ]) assert.ok(refused(body), body);
  for (const body of ["ADD app.tar.gz /opt/", "ADD '$U' /k", "ADD \\$U /k", "ADD --chown=1 a b /dst/", "COPY http.conf /etc/", "# ADD http://h/x /x", "RUN echo ADD http://x /y", "ADD <<EOF /f\nhttp://h/x\nEOF", "ADD a@b /c"]) {
    assert.equal(refused(body), undefined, body);
  }
  assert.deepEqual(refusedAddSource('FROM x\nADD "http://127.0.0.1:1/k" /k\n'), { line: 2, source: '"http://127.0.0.1:1/k"' });
});

test("RUN flags as the engine reads them: split, quoted and rw=false mounts are refused", () => {
  const flag = (body: string) => refusedRunFlag(`FROM x\n${body}\n`)?.flag;
  assert.equal(flag("RUN --net\\\nwork=host id"), "--network=host");
  assert.equal(flag('RUN --network=h"os"t id'), "--network=host");
  assert.equal(flag("RUN --security=insecure id"), "--security=insecure");
  assert.equal(flag("RUN --mount=type=bind,source=.,target=/c,rw=false id"), "--mount=type=bind,source=.,target=/c,rw=false");
  assert.equal(flag("RUN <<EOF\nRUN --network=host id\nEOF"), "--network=host");
  assert.equal(flag("RUN -- --network=host id"), undefined);
  assert.equal(flag("RUN --mount=type=bind,source=.,target=/c --network=none id"), undefined);
  assert.match(dockerfileRefusal('FROM x\nADD "http://h/" /k\nRUN --network=host id\n', "Dockerfile")!, /^Dockerfile line 2: ADD "\\"http:\/\/h\/\\"" is refused/);
});

test("FROM lines: continuations and stages read by the parser; a heredoc's FROM is content", () => {
  const text = "FROM \\\n  python:3.11 AS b\nRUN <<EOF\nFROM evil:1\nEOF\nFROM b\nFROM $X\nFROM alpine:3\n";
  assert.deepEqual(baseImages(text), [{ line: 1, image: "python:3.11" }, { line: 8, image: "alpine:3" }]);
  assert.equal(rewriteFromLines(text, { "alpine:3": "localhost/a", "evil:1": "localhost/e" }), text.replace("FROM alpine:3", "FROM localhost/a"));
});

test("tasks check reports what a local build would refuse, and a FROM split by a continuation counts", async () => {
  const { mkdtemp, mkdir, writeFile, rm } = await import("node:fs/promises");
  const os = await import("node:os");
  const path = await import("node:path");
  const { checkDataset } = await import("../../../src/tasks/check.js");
  const dir = await mkdtemp(path.join(os.tmpdir(), "tmax-dockerfile-check-"));
  try {
    for (const [name, dockerfile] of [["quoted-add", 'FROM \\\n  localhost/tb-base:bookworm\nADD "http://127.0.0.1:9/k" /k\n'], ["fine", "FROM \\\n  localhost/tb-base:bookworm\nRUN true\n"]]) {
      const task = path.join(dir, name!);
      await mkdir(path.join(task, "environment"), { recursive: true });
      await mkdir(path.join(task, "tests"));
      await writeFile(path.join(task, "task.toml"), "[verifier]\ntimeout_sec = 60.0\n");
      await writeFile(path.join(task, "instruction.md"), "Do it.\n");
      await writeFile(path.join(task, "environment", "Dockerfile"), dockerfile!);
      await writeFile(path.join(task, "tests", "test.sh"), "echo 1 > /logs/verifier/reward.txt\n");
    }
    const problems = (await checkDataset(dir)).filter((p) => p.file === "environment/Dockerfile");
    assert.deepEqual(problems.map((p) => [p.task, p.severity, p.message]), [
      ["quoted-add", "error", 'a local build refuses it: Dockerfile line 3: ADD "\\"http://127.0.0.1:9/k\\"" is refused (the engine would fetch it from the host\'s network; download with RUN instead)'],
    ]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
