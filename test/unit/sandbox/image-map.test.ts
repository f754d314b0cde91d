import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { baseImages, parseImageMap, rewriteFromLines } from "../../../src/sandbox/docker/build.js";

const LOCAL = "localhost/tb-base:bookworm";

test("rewriteFromLines maps a plain FROM and keeps the rest of the file", () => {
  const text = "# comment\nFROM python:3.11-slim\nWORKDIR /app\nRUN echo FROM python:3.11-slim\n";
  assert.equal(
    rewriteFromLines(text, { "python:3.11-slim": LOCAL }),
    `# comment\nFROM ${LOCAL}\nWORKDIR /app\nRUN echo FROM python:3.11-slim\n`,
  );
});

test("rewriteFromLines keeps AS names, --platform flags, indentation and keyword case", () => {
  const text = [
    "from ubuntu:22.04 AS build",
    "  FROM --platform=linux/amd64 ubuntu:22.04 as runtime",
    "FROM --platform=$BUILDPLATFORM ubuntu:22.04",
  ].join("\n");
  assert.equal(
    rewriteFromLines(text, { "ubuntu:22.04": LOCAL }),
    [`from ${LOCAL} AS build`, `  FROM --platform=linux/amd64 ${LOCAL} as runtime`, `FROM --platform=$BUILDPLATFORM ${LOCAL}`].join("\n"),
  );
});

test("rewriteFromLines leaves ARG-built images, stage references and unmapped images alone", () => {
  const text = [
    "ARG BASE=python:3.11",
    "FROM ${BASE} AS deps",
    "FROM $BASE",
    "FROM deps",
    "FROM DEPS AS final",
    "FROM node:20",
    "FROM scratch",
  ].join("\n");
  assert.equal(rewriteFromLines(text, { "python:3.11": LOCAL, deps: "nope", scratch: "nope" }), text);
});

test("rewriteFromLines matches keys with or without the docker.io/library prefix", () => {
  assert.equal(rewriteFromLines("FROM docker.io/library/python:3.11", { "python:3.11": LOCAL }), `FROM ${LOCAL}`);
  assert.equal(rewriteFromLines("FROM python:3.11", { "docker.io/library/python:3.11": LOCAL }), `FROM ${LOCAL}`);
  assert.equal(rewriteFromLines("FROM index.docker.io/library/python:3.11", { "docker.io/python:3.11": LOCAL }), `FROM ${LOCAL}`);
  // Other registries are not Docker Hub.
  assert.equal(rewriteFromLines("FROM ghcr.io/x/python:3.11", { "python:3.11": LOCAL }), "FROM ghcr.io/x/python:3.11");
});

test("rewriteFromLines: a key without a tag means :latest and any tag; an exact key wins", () => {
  const map = { ubuntu: LOCAL, "ubuntu:20.04": "localhost/old:1" };
  assert.equal(rewriteFromLines("FROM ubuntu", map), `FROM ${LOCAL}`);
  assert.equal(rewriteFromLines("FROM ubuntu:latest", map), `FROM ${LOCAL}`);
  assert.equal(rewriteFromLines("FROM ubuntu:24.04", map), `FROM ${LOCAL}`);
  assert.equal(rewriteFromLines("FROM ubuntu:20.04", map), "FROM localhost/old:1");
  // A key with a tag does not match other tags.
  assert.equal(rewriteFromLines("FROM python:3.12", { "python:3.11": LOCAL }), "FROM python:3.12");
  // `python` (implicitly :latest) is matched by a `python:latest` key.
  assert.equal(rewriteFromLines("FROM python", { "python:latest": LOCAL }), `FROM ${LOCAL}`);
});

test("rewriteFromLines handles registry ports, digests and CRLF files", () => {
  assert.equal(rewriteFromLines("FROM localhost:5000/img", { "localhost:5000/img": LOCAL }), `FROM ${LOCAL}`);
  const digest = "alpine@sha256:" + "a".repeat(64);
  assert.equal(rewriteFromLines(`FROM ${digest}`, { [digest]: LOCAL }), `FROM ${LOCAL}`);
  assert.equal(rewriteFromLines(`FROM ${digest}`, { alpine: LOCAL }), `FROM ${LOCAL}`);
  assert.equal(rewriteFromLines("FROM alpine:3.19\r\nRUN true\r\n", { "alpine:3.19": LOCAL }), `FROM ${LOCAL}\r\nRUN true\r\n`);
});

test("rewriteFromLines with an empty map returns the text unchanged", () => {
  const text = "FROM a\nFROM b AS c\n";
  assert.equal(rewriteFromLines(text, {}), text);
});

test("baseImages lists external images with line numbers", () => {
  const text = "ARG V=1\nFROM python:3.11 AS build\nFROM build\nFROM debian:$V\nFROM scratch\nfrom node:20\n";
  assert.deepEqual(baseImages(text), [
    { line: 2, image: "python:3.11" },
    { line: 6, image: "node:20" },
  ]);
});

test("parseImageMap reads FROM=TO pairs; later entries win", () => {
  assert.deepEqual(parseImageMap(["python:3.11=" + LOCAL, "ubuntu = localhost/u:1", "ubuntu=localhost/u:2"]), {
    "python:3.11": LOCAL,
    ubuntu: "localhost/u:2",
  });
  assert.deepEqual(parseImageMap([]), {});
});

test("parseImageMap rejects malformed pairs with a one-line error", () => {
  for (const bad of ["python", "=x", "x=", "  "]) {
    assert.throws(
      () => parseImageMap([bad]),
      (err: Error) => /bad --image-map/.test(err.message) && !err.message.includes("\n"),
    );
  }
});

test("parseImageMap reads JSON, YAML and TOML files", (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tmax-image-map-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const json = path.join(dir, "map.json");
  const yaml = path.join(dir, "map.yaml");
  const toml = path.join(dir, "map.toml");
  writeFileSync(json, JSON.stringify({ "python:3.11": LOCAL }));
  writeFileSync(yaml, `"ubuntu:22.04": ${LOCAL}\nalpine: localhost/a:1\n`);
  writeFileSync(toml, `"node:20" = "${LOCAL}"\n`);
  assert.deepEqual(parseImageMap([json]), { "python:3.11": LOCAL });
  assert.deepEqual(parseImageMap([yaml]), { "ubuntu:22.04": LOCAL, alpine: "localhost/a:1" });
  assert.deepEqual(parseImageMap([toml, "node:20=localhost/n:1"]), { "node:20": "localhost/n:1" });
});

test("parseImageMap rejects files that are not a string-to-string table", (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tmax-image-map-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const nested = path.join(dir, "bad.json");
  const broken = path.join(dir, "broken.toml");
  writeFileSync(nested, JSON.stringify({ python: { to: LOCAL } }));
  writeFileSync(broken, "this is = = not toml");
  assert.throws(() => parseImageMap([nested]), /must map image names to image names/);
  assert.throws(() => parseImageMap([broken]), (err: Error) => /cannot parse image map file/.test(err.message) && !err.message.includes("\n"));
});

test("parseImageMap validates a record", () => {
  assert.deepEqual(parseImageMap({ a: "b" }), { a: "b" });
  assert.throws(() => parseImageMap({ a: 1 } as unknown as Record<string, string>), /must map image names/);
});
