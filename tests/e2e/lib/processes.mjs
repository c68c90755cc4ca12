// Find and end the processes that a started process spawned (Linux only: reads /proc).
import { readdirSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

// Read one process's parent PID, start time and command line, or return null once it is gone
// or a zombie (a zombie is already dead and only waits to be reaped by its parent).
function readProcess(pid) {
  let stat;
  let cmdline;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return null;
  }
  // The command name in field 2 may contain spaces and parentheses, so split after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const state = fields[0];
  if (state === "Z" || state === "X") {
    return null;
  }
  return {
    pid,
    parentPid: Number(fields[1]),
    // Field 22 of /proc/PID/stat: start time in clock ticks after boot. Together with the PID
    // it identifies a process even if the PID is reused later.
    startTime: fields[19],
    command: cmdline.split("\0").filter(Boolean).join(" "),
  };
}

export function listProcesses() {
  const processes = new Map();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    const info = readProcess(Number(entry));
    if (info) {
      processes.set(info.pid, info);
    }
  }
  return processes;
}

// Return the live processes in the tree under each root PID, roots included.
export function findProcessTree(rootPids, processes = listProcesses()) {
  const childrenByParent = new Map();
  for (const info of processes.values()) {
    const siblings = childrenByParent.get(info.parentPid) ?? [];
    siblings.push(info);
    childrenByParent.set(info.parentPid, siblings);
  }

  const found = new Map();
  const pending = rootPids.filter((pid) => processes.has(pid)).map((pid) => processes.get(pid));
  while (pending.length > 0) {
    const info = pending.pop();
    if (found.has(info.pid)) {
      continue;
    }
    found.set(info.pid, info);
    pending.push(...(childrenByParent.get(info.pid) ?? []));
  }
  return [...found.values()];
}

function isSameProcessAlive(info) {
  const current = readProcess(info.pid);
  return current !== null && current.startTime === info.startTime;
}

function signalProcess(info, signal) {
  if (!isSameProcessAlive(info)) {
    return;
  }
  try {
    process.kill(info.pid, signal);
  } catch (error) {
    if (error.code !== "ESRCH") {
      throw error;
    }
  }
}

/**
 * End a process and everything it spawned: SIGTERM first, SIGKILL after graceMs.
 *
 * A child whose parent exits is re-parented (to PID 1 or a subreaper) and drops out of the
 * tree, so every PID seen once is kept, and the tree is searched again under each of them
 * until all are gone. Returns the processes that were found, each with the last signal sent.
 */
export async function endProcessTree(rootPid, { graceMs = 5000, timeoutMs = 15000 } = {}) {
  const known = new Map();
  const deadline = Date.now() + timeoutMs;
  const killAfter = Date.now() + graceMs;

  for (;;) {
    for (const info of findProcessTree([rootPid, ...known.keys()])) {
      if (!known.has(info.pid)) {
        known.set(info.pid, { ...info, signal: null });
      }
    }
    const alive = [...known.values()].filter(isSameProcessAlive);
    if (alive.length === 0) {
      return [...known.values()];
    }
    if (Date.now() > deadline) {
      const listing = alive.map((info) => `${info.pid} (${info.command})`).join(", ");
      throw new Error(`processes still running ${timeoutMs} ms after SIGTERM was sent: ${listing}`);
    }

    const signal = Date.now() >= killAfter ? "SIGKILL" : "SIGTERM";
    for (const info of alive) {
      if (info.signal !== signal) {
        signalProcess(info, signal);
        info.signal = signal;
      }
    }
    await sleep(100);
  }
}
