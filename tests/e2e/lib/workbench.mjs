// Drive the VS Code web workbench the way a user does: keyboard shortcuts, Quick Open, the
// command palette and the Problems panel. Selectors match VS Code 1.139 (code-server 4.139.1).

const quickInput = ".quick-input-widget";
const quickInputRows = ".quick-input-list .monaco-list-row";
const problemsPanel = ".markers-panel";

export async function openWorkspace(page, serverUrl, workspace, { timeoutMs = 30_000 } = {}) {
  await page.goto(`${serverUrl}/?folder=${encodeURIComponent(workspace)}`);
  await page.locator(".monaco-workbench").waitFor({ timeout: timeoutMs });
  await page.locator(".part.statusbar").waitFor({ timeout: timeoutMs });
}

// Open a file of the workspace through Quick Open (Ctrl+P) and wait for its editor tab. On a cold,
// busy machine the first file search can take longer than the time limit: then the file is opened
// from the Explorer instead, as a user would.
export async function quickOpenFile(page, fileName, { timeoutMs = 60_000 } = {}) {
  await page.keyboard.press("Control+P");
  await page.locator(quickInput).waitFor({ state: "visible", timeout: timeoutMs });
  await page.keyboard.type(fileName);
  try {
    await page.locator(quickInputRows, { hasText: fileName }).first().waitFor({ timeout: timeoutMs });
    await page.keyboard.press("Enter");
  } catch (error) {
    console.log(`Quick Open listed no ${fileName} within ${timeoutMs} ms (${error.name}); opening it from the Explorer`);
    await page.keyboard.press("Escape");
    await page.locator(".explorer-folders-view .monaco-list-row", { hasText: fileName }).first().click({ timeout: timeoutMs });
  }
  await page.locator(".tabs-container .tab.active", { hasText: fileName }).waitFor({ timeout: timeoutMs });
}

// Run a command by its palette label (F1), choosing the row whose label starts with `label`.
export async function runCommand(page, label, { timeoutMs = 15_000 } = {}) {
  await page.keyboard.press("F1");
  await page.locator(quickInput).waitFor({ state: "visible", timeout: timeoutMs });
  await page.keyboard.type(label);
  const escapedLabel = label.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const row = page.locator(quickInputRows, { hasText: new RegExp(`^\\s*${escapedLabel}`) }).first();
  await row.waitFor({ timeout: timeoutMs });
  await row.click();
  await page.locator(quickInput).waitFor({ state: "hidden", timeout: timeoutMs });
}

export async function showProblemsPanel(page, { timeoutMs = 15_000 } = {}) {
  await runCommand(page, "Problems: Focus on Problems View", { timeoutMs });
  await page.locator(problemsPanel).waitFor({ state: "visible", timeout: timeoutMs });
  return page.locator(problemsPanel);
}

// Problem rows contain a `.marker-code` element, but file rows and related-information rows do not.
export function problemRows(page, code) {
  return page.locator(`${problemsPanel} .monaco-list-row`, {
    has: page.locator(".marker-code", { hasText: code }),
  });
}

/**
 * Read one row of the Problems tree: { ariaLabel, text, code, message, source, line, column }.
 * line and column are parsed from the "[Ln N, Col M]" label, or null when it is missing.
 */
export async function readProblemRow(row) {
  const text = async (selector) => {
    const element = row.locator(selector);
    return (await element.count()) > 0 ? (await element.first().innerText()).trim() : null;
  };
  const position = (await text(".marker-line")) ?? "";
  const match = /Ln (\d+), Col (\d+)/.exec(position);
  return {
    ariaLabel: await row.getAttribute("aria-label"),
    text: await row.innerText(),
    code: await text(".marker-code"),
    message: await text(".marker-message"),
    source: await text(".marker-source"),
    line: match ? Number(match[1]) : null,
    column: match ? Number(match[2]) : null,
  };
}

// Return the editor cursor position shown in the status bar ("Ln 55, Col 5"), or null.
export async function readCursorPosition(page) {
  const item = page.locator(".statusbar-item", { hasText: /^\s*Ln \d+, Col \d+/ }).first();
  if ((await item.count()) === 0) {
    return null;
  }
  const match = /Ln (\d+), Col (\d+)/.exec(await item.innerText());
  return match ? { line: Number(match[1]), column: Number(match[2]) } : null;
}
