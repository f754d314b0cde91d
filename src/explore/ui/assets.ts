// The browser code and the stylesheet of the report and the web UI live in assets/explore/ as real files; they
// are read once here and inlined into the pages (from `tsx src/...` and from compiled `dist/` alike).
import { readFileSync } from "node:fs";

const asset = (name: string) => readFileSync(new URL(`../../../assets/explore/${name}`, import.meta.url), "utf8");

/** Shared by both pages: DOM builder, formats, charts, issues panel, conversation view, heat-map. */
export const COMMON_JS = asset("common.js");
/** The web UI's router over server.ts's JSON APIs (after COMMON_JS). */
export const APP_JS = asset("app.js");
/** The static report's charts, filters and trajectory reader (after COMMON_JS). */
export const REPORT_JS = asset("report.js");
/** The stylesheet of both pages. */
export const STYLE_CSS = asset("style.css");
