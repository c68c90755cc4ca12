// Helpers for the debug-session end-to-end test: the test-only debug adapter extension, the Run and Debug side bar,
// tree views and webviews. Selectors match VS Code 1.139 (code-server 4.139.1).
import { execFile } from "node:child_process";
import { cpSync, mkdirSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";

import { repoRoot } from "./tools.mjs";

const execFileAsync = promisify(execFile);

const quickInput = ".quick-input-widget";
const quickInputRows = ".quick-input-list .monaco-list-row";

/**
 * Package the extension folder `sourceDir` as a .vsix with the repository's vsce (a dev dependency) and return the
 * package's path. The folder is copied first, so nothing is written into the repository.
 */
export async function packageExtensionFolder(sourceDir, workDir) {
  const copy = path.join(workDir, path.basename(sourceDir));
  mkdirSync(workDir, { recursive: true });
  cpSync(sourceDir, copy, { recursive: true });
  const vsixPath = path.join(workDir, `${path.basename(sourceDir)}.vsix`);
  const vsce = path.join(repoRoot, "node_modules/.bin/vsce");
  try {
    await execFileAsync(
      vsce,
      ["package", "--no-dependencies", "--allow-missing-repository", "--skip-license", "--out", vsixPath],
      { cwd: copy, timeout: 60_000 },
    );
  } catch (error) {
    throw new Error(`vsce package failed in ${copy} (exit ${error.code}):\n${error.stdout}\n${error.stderr}`);
  }
  return vsixPath;
}

/**
 * Run a command from the palette (F1) by its exact label. Unlike runCommand in workbench.mjs it never picks a
 * longer label that starts the same way ("gradsight: Check Gradients of Another Model...").
 */
export async function runExactCommand(page, label, { timeoutMs = 15_000 } = {}) {
  await page.keyboard.press("F1");
  await page.locator(quickInput).waitFor({ state: "visible", timeout: timeoutMs });
  await page.keyboard.type(label);
  const row = page.locator(quickInputRows).filter({
    has: page.locator(".label-name", { hasText: new RegExp(`^\\s*${escapeRegExp(label)}\\s*$`) }),
  });
  await row.first().waitFor({ timeout: timeoutMs });
  await row.first().click();
  await page.locator(quickInput).waitFor({ state: "hidden", timeout: timeoutMs });
}

export function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Wait until the Call Stack view's header says the program paused at a breakpoint, and return the view's text. */
export async function waitForDebugPause(page, { timeoutMs = 120_000 } = {}) {
  const callStack = viewPane(page, "Call Stack").filter({ hasText: /Paused on breakpoint/i }).first();
  await callStack.waitFor({ timeout: timeoutMs });
  return callStack.innerText();
}

/**
 * Return the side bar pane whose header title is `title` (compared without case, since the header is shown in
 * upper case).
 */
export function viewPane(page, title) {
  return page.locator(".pane").filter({
    has: page.locator(".pane-header .title", { hasText: new RegExp(`^\\s*${escapeRegExp(title)}\\s*$`, "i") }),
  });
}

/** Collapse a side bar pane when it is expanded, to leave room for the others. */
export async function collapsePane(page, title) {
  const header = viewPane(page, title).locator(".pane-header").first();
  if ((await header.getAttribute("aria-expanded")) === "true") {
    await header.click();
  }
}

/** Return the row of a tree view pane whose label is exactly `label`. */
export function treeRow(pane, label) {
  return pane.locator(".monaco-list-row").filter({
    has: pane.page().locator(".label-name", { hasText: new RegExp(`^\\s*${escapeRegExp(label)}\\s*$`) }),
  });
}

/** Read the rows of a tree view pane: [{ label, description, ariaLabel }]. */
export async function readTreeRows(pane) {
  const rows = [];
  for (const row of await pane.locator(".monaco-list-row").all()) {
    const text = async (selector) => {
      const element = row.locator(selector);
      return (await element.count()) > 0 ? (await element.first().innerText()).trim() : "";
    };
    rows.push({
      label: await text(".label-name"),
      description: await text(".label-description"),
      ariaLabel: (await row.getAttribute("aria-label")) ?? "",
    });
  }
  return rows;
}

/** Return a locator inside the content frame of the active webview panel (the frame of the extension's page). */
export function webviewContent(page) {
  return page.frameLocator("iframe.webview.ready").frameLocator("#active-frame");
}
