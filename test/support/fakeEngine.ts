// A stand-in for a container engine's HTTP API (the Docker API that podman serves), on 127.0.0.1: it answers
// the ping and the version (so `tmax` believes an engine is there), lists the containers and images it was given
// (filtered by label the way the engine does), and leaves every other request unanswered — a command that goes
// on to build or create waits there, which is what the signal tests need. Nothing runs; nothing is removed.
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface FakeContainer {
  Id: string;
  Names: string[];
  Labels: Record<string, string>;
}

export interface FakeImage {
  Id: string;
  RepoTags: string[];
  Labels: Record<string, string>;
}

export interface FakeEngine {
  /** DOCKER_HOST for a client: tcp://127.0.0.1:<port>. */
  host: string;
  /** Every request as `METHOD /path` (without the API version prefix). */
  requests: string[];
  close(): Promise<void>;
}

const labelFilter = (url: URL): string[] => {
  const raw = url.searchParams.get("filters");
  if (!raw) return [];
  const filters = JSON.parse(raw) as { label?: string[] | Record<string, boolean> };
  return Array.isArray(filters.label) ? filters.label : Object.keys(filters.label ?? {});
};

const matches = (labels: Record<string, string>, wanted: string[]) =>
  wanted.every((w) => {
    const [k, v] = w.split("=", 2) as [string, string | undefined];
    return v === undefined ? k in labels : labels[k] === v;
  });

export async function startFakeEngine(state: { containers?: FakeContainer[]; images?: FakeImage[] } = {}): Promise<FakeEngine> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://engine");
    const route = url.pathname.replace(/^\/v[0-9.]+/, "");
    requests.push(`${req.method} ${route}`);
    const json = (body: unknown) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (route === "/_ping") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("OK");
    } else if (route === "/version") json({ Version: "0.0-fake", ApiVersion: "1.41", Components: [{ Name: "fake engine" }] });
    else if (route === "/containers/json") json((state.containers ?? []).filter((c) => matches(c.Labels, labelFilter(url))));
    else if (route === "/images/json") json((state.images ?? []).filter((i) => matches(i.Labels, labelFilter(url))));
    // anything else waits until the client goes away (or close())
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `tcp://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
