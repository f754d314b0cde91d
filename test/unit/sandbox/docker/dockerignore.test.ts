// .dockerignore against Docker's rules. Expected results are moby/patternmatcher's own test tables
// (TestMatches, TestMatch from Go's filepath.Match tests, the folder-exception tests) and the Dockerfile
// reference's .dockerignore section; then the exact file set a build context sends.
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { contextEntries, parseDockerIgnore } from "../../../../src/sandbox/docker/dockerignore.js";

// [patterns (one .dockerignore), path, excluded by Docker?]
const TABLE: [string, string, boolean][] = [
  // the three the old matcher got wrong: character classes and escapes (filepath.Match syntax)
  ["*.py[co]", "mod.pyc", true],
  ["*.py[co]", "mod.pyo", true],
  ["*.py[co]", "mod.py", false],
  ["*.py[co]", "pkg/mod.pyc", false], // `*` never crosses a `/`
  ["**/*.py[co]", "pkg/sub/mod.pyc", true],
  ["data[0-9].csv", "data7.csv", true],
  ["data[0-9].csv", "dataX.csv", false],
  ["data[^0-9].csv", "dataX.csv", true],
  ["data[^0-9].csv", "data7.csv", false],
  ["a\\*b", "a*b", true],
  ["a\\*b", "axb", false],
  ["a\\\\", "a\\", true],
  ["\\#notacomment", "#notacomment", true],
  // filepath.Match
  ["ab[b-d]", "abc", true],
  ["ab[e-g]", "abc", false],
  ["ab[^c]", "abc", false],
  ["a?b", "a/b", false],
  ["a*b", "a/b", false],
  ["abc?def", "abcZdef", true],
  ["abc?def", "abcdef", false],
  ["abc.def", "abcZdef", false],
  [".*", ".foo", true],
  [".*", "foo", false],
  // regexp characters are literal
  ["a(b)c/def", "a(b)c/def", true],
  ["a(b)c/def", "abc/def", false],
  ["a.|)$(}+{bc", "a.|)$(}+{bc", true],
  ["dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true],
  ["c++", "c++", true],
  // `**`
  ["**", "dir/file", true],
  ["**/dir", "dir", true],
  ["**/dir", "x/y/dir/file", true],
  ["**/dir2/*", "dir/dir2/file", true],
  ["abc/**", "abc", false],
  ["abc/**", "abc/def/ghi", true],
  ["a**/*.txt", "a/dir/dir/file.txt", true],
  ["**/.foo", "bar.foo", false],
  // a pattern that matches a dir excludes what is in it
  ["docs", "docs/README.md", true],
  ["docs/", "docs/a/b.md", true],
  ["a*", "ab/c", true],
  ["*/temp*", "somedir/temporary.txt", true],
  ["*/temp*", "somedir/sub/temporary.txt", false],
  ["*/*/temp*", "somedir/subdir/temporary.txt", true],
  ["temp?", "tempa", true],
  // case-sensitive, as on Linux
  ["README.md", "readme.md", false],
  // leading `/` and `./` are cleaned; `..` is resolved
  ["/secret.txt", "secret.txt", true],
  ["./secret.txt", "secret.txt", true],
  ["sub/../secret.txt", "secret.txt", true],
  // comments, blank lines, surrounding blanks
  ["# secret.txt\n\n   \n", "secret.txt", false],
  ["   secret.txt   ", "secret.txt", true],
  // exceptions: in order, the last match wins
  ["*.md\n!README.md", "README.md", false],
  ["*.md\n!README*.md\nREADME-secret.md", "README-secret.md", true],
  ["*.md\n!README*.md\nREADME-secret.md", "README-public.md", false],
  ["!fileutils.go\n*.go", "fileutils.go", true],
  ["docs\n!docs/README.md", "docs/README.md", false],
  ["docs/*\n!docs/README.md", "docs/README.md", false],
  ["**\n!util/docker/web", "util/docker/web/foo", false],
  ["**\n!util/docker/web\nutil/docker/web/foo", "util/docker/web/foo", true],
  ["*.go\n  !  fileutils.go  ", "fileutils.go", false],
];

test(".dockerignore: each pattern and path as Docker decides", () => {
  const wrong = TABLE.filter(([text, rel, want]) => parseDockerIgnore(text).ignored(rel) !== want);
  assert.deepEqual(wrong, [], "rows where tmax disagrees with Docker");
  assert.ok(TABLE.length >= 20);
});

test(".dockerignore: patterns Docker refuses are refused, naming the line", () => {
  assert.throws(() => parseDockerIgnore("ok\n!\n"), /line 2: "!" alone/);
  assert.throws(() => parseDockerIgnore("# c\n[\n"), /line 2: syntax error in pattern "\["/);
  assert.throws(() => parseDockerIgnore("a[\n"), /syntax error/);
});

test("build context: exactly the files Docker would send for a task with a .dockerignore", async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "tmax-dockerignore-"));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  const files: Record<string, string> = {
    "Dockerfile": "FROM x\n",
    ".dockerignore": ["# build leftovers", "**/*.py[co]", "data[0-9].csv", "docs", "!docs/README.md", "*.log", "!keep.log", "Dockerfile", "secret\\*.txt", "node_modules"].join("\n"),
    "app/main.py": "",
    "app/main.pyc": "",
    "app/sub/util.pyo": "",
    "data1.csv": "",
    "data10.csv": "",
    "docs/README.md": "",
    "docs/guide.md": "",
    "docs/img/a.png": "",
    "run.log": "",
    "keep.log": "",
    "secret*.txt": "",
    "secretX.txt": "",
    "node_modules/x/index.js": "",
  };
  for (const [rel, body] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await fs.writeFile(path.join(dir, rel), body);
  }
  const sent = (await contextEntries(dir, "Dockerfile")).map((e) => e.rel);
  assert.deepEqual(sent, [
    ".dockerignore",
    "Dockerfile", // the Dockerfile is sent even when a pattern matches it
    "app",
    "app/main.py",
    "app/sub",
    "data10.csv",
    "docs/README.md", // re-included under an excluded dir; the dir itself is not an entry
    "keep.log",
    "secretX.txt",
  ]);
  // with no .dockerignore, everything is sent
  await fs.rm(path.join(dir, ".dockerignore"));
  assert.equal((await contextEntries(dir, "Dockerfile")).length, 20);
});
