// The SFT trace rows as one Parquet file: metadata as typed columns, messages and tools as JSON columns
// (their shape varies per message: tool_calls, reasoning, ids), read back with hyparquet.
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet";
import { fileWriter, parquetWriteRows, type SchemaElement } from "hyparquet-writer";
import type { TraceRow } from "./traces.js";

const text = (name: string, nullable = false): SchemaElement => ({ name, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: nullable ? "OPTIONAL" : "REQUIRED" });
const json = (name: string): SchemaElement => ({ name, type: "BYTE_ARRAY", converted_type: "JSON", repetition_type: "REQUIRED" });

const COLUMNS: SchemaElement[] = [
  text("job"),
  text("task"),
  text("trial"),
  { name: "reward", type: "DOUBLE", repetition_type: "REQUIRED" },
  text("exception", true),
  text("agent"),
  text("model"),
  text("started_at", true),
  json("messages"),
  json("tools"),
];

export async function writeTraceParquet(rows: TraceRow[], file: string): Promise<void> {
  await parquetWriteRows({
    writer: fileWriter(file),
    rows: rows.map((r) => ({ ...r.metadata, messages: r.messages, tools: r.tools ?? [] })),
    columns: COLUMNS.map((c) => ({ name: c.name, statistics: c.converted_type !== "JSON" })),
    schema: [{ name: "root", num_children: COLUMNS.length }, ...COLUMNS],
    kvMetadata: [{ key: "tmax.schema", value: "tmax.traces_sft/v1" }],
    createdBy: "tmax",
  });
}

/** The rows back (JSON columns parsed), as a reader would see them. */
export async function readTraceParquet(file: string): Promise<Record<string, unknown>[]> {
  const rows = await parquetReadObjects({ file: await asyncBufferFromFile(file) });
  return rows.map((r) => ({ ...r, messages: parse(r.messages), tools: parse(r.tools) }));
}

const parse = (v: unknown) => (typeof v === "string" ? JSON.parse(v) : v);
