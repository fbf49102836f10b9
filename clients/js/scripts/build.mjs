#!/usr/bin/env node
// Builds the package: ES modules with type declarations (tsc) in dist/esm,
// and browser bundles (esbuild) in dist/browser:
//   chatmesh.js       ES module, readable
//   chatmesh.min.js   ES module, minified
//   chatmesh.iife.js  a classic script defining the global `Chatmesh`, minified
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
rmSync(join(root, "dist"), { recursive: true, force: true });
execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", join(root, "tsconfig.json")], {
  stdio: "inherit",
});
const common = {
  entryPoints: [join(root, "src/index.ts")],
  bundle: true,
  platform: "browser",
  target: ["es2022"],
  sourcemap: true,
  legalComments: "none",
  logLevel: "warning",
};
await Promise.all([
  build({ ...common, format: "esm", outfile: join(root, "dist/browser/chatmesh.js") }),
  build({ ...common, format: "esm", minify: true, outfile: join(root, "dist/browser/chatmesh.min.js") }),
  build({ ...common, format: "iife", globalName: "Chatmesh", minify: true, outfile: join(root, "dist/browser/chatmesh.iife.js") }),
]);
console.log("built dist/esm and dist/browser");
