#!/usr/bin/env node
// Builds the page into dist/: app.js (src/main.ts and the SDK from ../js/src,
// bundled by esbuild), index.html and style.css from public/.
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const root = dirname(fileURLToPath(import.meta.url));
const out = join(root, "dist");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(root, "src/main.ts")],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: process.argv.includes("--minify"),
  sourcemap: true,
  legalComments: "none",
  logLevel: "warning",
  outfile: join(out, "app.js"),
});
cpSync(join(root, "public"), out, { recursive: true });
console.log("built dist/ (index.html, style.css, app.js)");
