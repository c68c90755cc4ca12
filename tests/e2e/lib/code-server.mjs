// Install an extension into code-server and start it on 127.0.0.1 with fresh per-run folders.
import { execFile, spawn } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";

import { endProcessTree, findProcessTree } from "./processes.mjs";
import { codeServerEntry, nodeBinary } from "./tools.mjs";

const execFileAsync = promisify(execFile);

// User settings that keep VS Code from reaching out (updates, telemetry, marketplace,
// experiments) and from opening editors or prompts of its own.
const quietOfflineSettings = {
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "extensions.autoUpdate": false,
  "extensions.autoCheckUpdates": false,
  "extensions.ignoreRecommendations": true,
  "workbench.enableExperiments": false,
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.welcomePage.walkthroughs.openOnInstall": false,
  "workbench.secondarySideBar.defaultVisibility": "hidden",
  "security.workspace.trust.enabled": false,
  "git.enabled": false,
  "npm.fetchOnlinePackageInfo": false,
  "chat.disableAIFeatures": true,
  "problems.defaultViewMode": "tree",
};

/**
 * Create the folders of one run under a new temporary folder: user data, extensions, the
 * XDG config/data/cache/state homes, a temporary folder and a browser profile.
 */
export function createRunFolders(prefix = "gradsight-e2e-") {
  const root = mkdtempSync(path.join(os.tmpdir(), prefix));
  const folders = { root };
  for (const name of ["userData", "extensions", "config", "data", "cache", "state", "tmp", "browserProfile"]) {
    folders[name] = path.join(root, name);
    mkdirSync(folders[name]);
  }
  return folders;
}

// Build code-server's environment: the per-run folders, no extension marketplace, and no
// VSCODE_* variables inherited from an editor the test may have been started from.
function codeServerEnvironment(folders) {
  const environment = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith("VSCODE_")) {
      environment[name] = value;
    }
  }
  return {
    ...environment,
    XDG_CONFIG_HOME: folders.config,
    XDG_DATA_HOME: folders.data,
    XDG_CACHE_HOME: folders.cache,
    XDG_STATE_HOME: folders.state,
    TMPDIR: folders.tmp,
    EXTENSIONS_GALLERY: "{}",
  };
}

function folderArguments(folders) {
  return ["--user-data-dir", folders.userData, "--extensions-dir", folders.extensions];
}

export function writeUserSettings(folders, settings = {}) {
  const userFolder = path.join(folders.userData, "User");
  mkdirSync(userFolder, { recursive: true });
  const merged = { ...quietOfflineSettings, ...settings };
  writeFileSync(path.join(userFolder, "settings.json"), `${JSON.stringify(merged, null, 2)}\n`);
}

/**
 * Install a .vsix into the run's extensions folder with code-server's CLI.
 * Returns the installed extensions as listed by `--list-extensions --show-versions`.
 */
export async function installExtension(folders, vsixPath) {
  const options = { env: codeServerEnvironment(folders), timeout: 60_000 };
  const common = [codeServerEntry, ...folderArguments(folders)];
  try {
    await execFileAsync(nodeBinary, [...common, "--force", "--install-extension", vsixPath], options);
  } catch (error) {
    throw new Error(
      `code-server --install-extension ${vsixPath} failed (exit ${error.code}):\n${error.stdout}\n${error.stderr}`,
    );
  }
  const { stdout } = await execFileAsync(nodeBinary, [...common, "--list-extensions", "--show-versions"], options);
  return stdout.split("\n").map((line) => line.trim()).filter((line) => /^[\w.-]+\.[\w.-]+@/.test(line));
}

async function findFreePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function readLogTail(logFile, maxChars = 4000) {
  try {
    return readFileSync(logFile, "utf8").slice(-maxChars);
  } catch {
    return "(no log)";
  }
}

/**
 * Start code-server on a free 127.0.0.1 port without authentication and wait until its
 * /healthz endpoint responds with 200 OK. Returns { url, pid, logFile, processTree(), stop() }.
 * stop() ends code-server, the extension host and the processes they spawned, by PID.
 */
export async function startCodeServer(folders, workspace, { startTimeoutMs = 30_000 } = {}) {
  const port = await findFreePort();
  const url = `http://127.0.0.1:${port}`;
  const logFile = path.join(folders.root, "code-server.log");
  const logFd = openSync(logFile, "a");
  const child = spawn(
    nodeBinary,
    [
      codeServerEntry,
      ...folderArguments(folders),
      "--bind-addr", `127.0.0.1:${port}`,
      "--auth", "none",
      "--disable-telemetry",
      "--disable-update-check",
      "--disable-workspace-trust",
      "--disable-getting-started-override",
      "--ignore-last-opened",
      workspace,
    ],
    { env: codeServerEnvironment(folders), stdio: ["ignore", logFd, logFd] },
  );
  closeSync(logFd);

  let exitStatus = null;
  child.once("exit", (code, signal) => {
    exitStatus = { code, signal };
  });

  const stop = async () => {
    if (exitStatus !== null && findProcessTree([child.pid]).length === 0) {
      return [];
    }
    return endProcessTree(child.pid);
  };

  const deadline = Date.now() + startTimeoutMs;
  for (;;) {
    if (exitStatus !== null) {
      throw new Error(
        `code-server exited before it was ready (code ${exitStatus.code}, signal ${exitStatus.signal}). ` +
          `Log ${logFile}:\n${readLogTail(logFile)}`,
      );
    }
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) {
        break;
      }
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`code-server did not respond with 200 OK on ${url}/healthz within ${startTimeoutMs} ms. Log ${logFile}:\n${readLogTail(logFile)}`);
    }
    await sleep(200);
  }

  return {
    url,
    pid: child.pid,
    logFile,
    processTree: () => findProcessTree([child.pid]),
    stop,
  };
}
