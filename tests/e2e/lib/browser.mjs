// Launch Debian's Chromium headless through playwright-core with every non-loopback request
// aborted and recorded.
import { mkdirSync } from "node:fs";
import path from "node:path";

import { artifactsDir, chromiumBinary, importPlaywright } from "./tools.mjs";

const chromiumArguments = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

// Return true for URLs that stay on this machine: http(s) and ws(s) to 127.0.0.1, and
// schemes that never touch the network (data:, blob:, about:).
export function isLoopbackUrl(url) {
  const parsed = url instanceof URL ? url : new URL(url);
  if (["data:", "blob:", "about:"].includes(parsed.protocol)) {
    return true;
  }
  return ["http:", "https:", "ws:", "wss:"].includes(parsed.protocol) && parsed.hostname === "127.0.0.1";
}

/**
 * Launch Chromium with a persistent profile in profileDir and return
 * { context, page, blockedUrls, close() }. blockedUrls collects every request and WebSocket
 * that the pages tried to open to anything but 127.0.0.1. Each one is aborted.
 */
export async function launchBrowser(profileDir, { viewport = { width: 1600, height: 1000 } } = {}) {
  const { chromium } = await importPlaywright();
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: chromiumBinary,
    headless: true,
    args: chromiumArguments,
    viewport,
  });

  const blockedUrls = [];
  await context.route(
    (url) => !isLoopbackUrl(url),
    (route) => {
      blockedUrls.push(route.request().url());
      return route.abort("blockedbyclient");
    },
  );
  await context.routeWebSocket(
    (url) => !isLoopbackUrl(url),
    (webSocketRoute) => {
      blockedUrls.push(webSocketRoute.url());
      return webSocketRoute.close();
    },
  );

  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    blockedUrls,
    close: () => context.close(),
  };
}

// Save a screenshot of the whole window as .e2e-artifacts/NAME.png and return its path.
export async function saveScreenshot(page, name) {
  mkdirSync(artifactsDir, { recursive: true });
  const file = path.join(artifactsDir, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}
