import { execFile } from 'node:child_process';

import { describeError, Logger } from './logger';
import { INTERPRETER_SETTING } from './settings';

/** Oldest Python the server supports, matching `requires-python` in pyproject.toml. */
export const MIN_PYTHON_VERSION: PythonVersion = { major: 3, minor: 10, micro: 0 };

/** Time limit for running an interpreter to read its version. Slow conda activations can take several seconds. */
export const VERSION_CHECK_TIMEOUT_MS = 15_000;

/** Prints `major.minor.micro`. The statement also runs on Python 2, so an old interpreter reports its version. */
const VERSION_SCRIPT = "import sys; print('.'.join(str(part) for part in sys.version_info[:3]))";

export interface PythonVersion {
    major: number;
    minor: number;
    micro: number;
}

/** Origin of an interpreter candidate. Candidates are tried in the order listed here. */
export type InterpreterSource = 'python-extension' | 'setting' | 'default';

export interface InterpreterCandidate {
    /** Executable followed by any extra arguments to pass before `-c` or `-m`. */
    command: string[];
    source: InterpreterSource;
}

/** Result of running one candidate to read its version. */
export interface InterpreterCheck {
    candidate: InterpreterCandidate;
    version?: PythonVersion;
    /** Reason the candidate cannot run the server. Undefined when it can. */
    problem?: string;
}

/** Access to the interpreter that the Python extension (`ms-python.python`) selected for a workspace folder. */
export interface PythonExtensionInterpreterSource {
    /** Returns the selected environment's interpreter command, or undefined when the environment has none. */
    getActiveInterpreter(): Promise<string[] | undefined>;
}

/** End state of a child process: exited, failed to spawn, or killed at the time limit. */
export type ProcessOutcome =
    | { kind: 'exited'; exitCode: number | null; signal: string | null; stdout: string; stderr: string }
    | { kind: 'spawn-failed'; code: string | undefined; message: string }
    | { kind: 'timed-out' };

export type ProcessRunner = (file: string, args: string[], timeoutMs: number) => Promise<ProcessOutcome>;

/** Runs a process to completion with a time limit and reports how it ended. Never rejects. */
export function runProcess(file: string, args: string[], timeoutMs: number): Promise<ProcessOutcome> {
    return new Promise((resolve) => {
        execFile(file, args, { timeout: timeoutMs, windowsHide: true, encoding: 'utf8' }, (error, stdout, stderr) => {
            if (error === null) {
                resolve({ kind: 'exited', exitCode: 0, signal: null, stdout, stderr });
                return;
            }
            // execFile sets a string code (ENOENT, EACCES) when the process could not be spawned and a numeric
            // exit code otherwise. `killed` is set when the timeout option terminated the process.
            if (typeof error.code === 'string') {
                resolve({ kind: 'spawn-failed', code: error.code, message: error.message });
                return;
            }
            if (error.killed === true) {
                resolve({ kind: 'timed-out' });
                return;
            }
            resolve({
                kind: 'exited',
                exitCode: typeof error.code === 'number' ? error.code : null,
                signal: error.signal ?? null,
                stdout,
                stderr,
            });
        });
    });
}

export function formatVersion(version: PythonVersion): string {
    return `${version.major}.${version.minor}.${version.micro}`;
}

/** Quotes arguments that contain spaces so a logged command can be read back unambiguously. */
export function formatCommand(command: string[]): string {
    return command.map((part) => (/\s/.test(part) ? JSON.stringify(part) : part)).join(' ');
}

export function describeSource(source: InterpreterSource): string {
    switch (source) {
        case 'python-extension':
            return "the Python extension's selected environment";
        case 'setting':
            return `the ${INTERPRETER_SETTING} setting`;
        case 'default':
            return 'the default interpreter on PATH';
    }
}

/** Returns the interpreter tried last: `python3`, or `python` on Windows where `python3` is often missing. */
export function defaultInterpreter(platform: NodeJS.Platform): string[] {
    return platform === 'win32' ? ['python'] : ['python3'];
}

/**
 * Lists the interpreters to try, in order: the Python extension's selected environment (when that extension is
 * installed), then the `gradsight.interpreter` setting, then the default interpreter. Identical commands are
 * listed once, under their first source.
 */
export async function collectInterpreterCandidates(options: {
    pythonExtension: PythonExtensionInterpreterSource | undefined;
    settingInterpreter: string[];
    platform: NodeJS.Platform;
    logger: Logger;
}): Promise<InterpreterCandidate[]> {
    const candidates: InterpreterCandidate[] = [];
    const addCandidate = (command: string[], source: InterpreterSource): void => {
        const key = JSON.stringify(command);
        if (!candidates.some((candidate) => JSON.stringify(candidate.command) === key)) {
            candidates.push({ command, source });
        }
    };

    if (options.pythonExtension !== undefined) {
        try {
            const command = await options.pythonExtension.getActiveInterpreter();
            if (command !== undefined && command.length > 0) {
                addCandidate(command, 'python-extension');
            } else {
                options.logger.warn("The Python extension's selected environment has no Python executable, so it is skipped.");
            }
        } catch (error) {
            options.logger.error(`Failed to read the Python extension's selected environment: ${describeError(error)}`);
        }
    }

    if (options.settingInterpreter.length > 0) {
        addCandidate(options.settingInterpreter, 'setting');
    }

    addCandidate(defaultInterpreter(options.platform), 'default');
    return candidates;
}

/** Parses the `major.minor.micro` line that VERSION_SCRIPT prints, ignoring any lines before it. */
export function parseVersionOutput(stdout: string): PythonVersion | undefined {
    const lines = stdout.trim().split(/\r?\n/);
    const match = /^(\d+)\.(\d+)\.(\d+)$/.exec(lines[lines.length - 1].trim());
    if (match === null) {
        return undefined;
    }
    return { major: Number(match[1]), minor: Number(match[2]), micro: Number(match[3]) };
}

export function isSupportedVersion(version: PythonVersion): boolean {
    if (version.major !== MIN_PYTHON_VERSION.major) {
        return version.major > MIN_PYTHON_VERSION.major;
    }
    return version.minor >= MIN_PYTHON_VERSION.minor;
}

function firstLine(text: string): string {
    return text.trim().split(/\r?\n/)[0] ?? '';
}

/** Describes why a version check run did not exit with code 0. */
function describeFailure(outcome: ProcessOutcome, timeoutMs: number): string {
    switch (outcome.kind) {
        case 'spawn-failed':
            return outcome.code === 'ENOENT'
                ? 'the executable was not found'
                : `the executable could not be started (${outcome.message})`;
        case 'timed-out':
            return `it did not print its version within ${timeoutMs / 1000} s`;
        case 'exited': {
            const how = outcome.signal !== null ? `was terminated by ${outcome.signal}` : `exited with code ${outcome.exitCode}`;
            const stderr = firstLine(outcome.stderr);
            return stderr === '' ? `it ${how}` : `it ${how}: ${stderr}`;
        }
    }
}

/** Runs a candidate with VERSION_SCRIPT and reports its version or why it cannot run the server. */
export async function checkInterpreter(
    candidate: InterpreterCandidate,
    runner: ProcessRunner = runProcess,
    timeoutMs: number = VERSION_CHECK_TIMEOUT_MS,
): Promise<InterpreterCheck> {
    const [file, ...extraArgs] = candidate.command;
    const outcome = await runner(file, [...extraArgs, '-c', VERSION_SCRIPT], timeoutMs);

    if (outcome.kind !== 'exited' || outcome.exitCode !== 0) {
        return { candidate, problem: describeFailure(outcome, timeoutMs) };
    }

    const version = parseVersionOutput(outcome.stdout);
    if (version === undefined) {
        return { candidate, problem: `it printed no version number (output: ${JSON.stringify(outcome.stdout.trim())})` };
    }
    if (!isSupportedVersion(version)) {
        return {
            candidate,
            version,
            problem: `it is Python ${formatVersion(version)}, older than the required ${MIN_PYTHON_VERSION.major}.${MIN_PYTHON_VERSION.minor}`,
        };
    }
    return { candidate, version };
}

/** Outcome of choosing an interpreter: the first usable check, if any, and every check that was run. */
export interface InterpreterSelection {
    selected?: InterpreterCheck;
    checks: InterpreterCheck[];
}

/** Checks candidates in order and selects the first one that runs Python 3.10 or newer. */
export async function selectInterpreter(
    candidates: InterpreterCandidate[],
    logger: Logger,
    check: (candidate: InterpreterCandidate) => Promise<InterpreterCheck> = (candidate) => checkInterpreter(candidate),
): Promise<InterpreterSelection> {
    const checks: InterpreterCheck[] = [];
    for (const candidate of candidates) {
        const result = await check(candidate);
        checks.push(result);
        const label = `${formatCommand(candidate.command)} (from ${describeSource(candidate.source)})`;
        if (result.problem === undefined && result.version !== undefined) {
            logger.info(`Using Python ${formatVersion(result.version)}: ${label}`);
            return { selected: result, checks };
        }
        logger.warn(`Skipping interpreter ${label} because ${result.problem}`);
    }
    return { checks };
}

/** Builds the error notification for the case where no candidate can run the server. */
export function formatNoInterpreterMessage(checks: InterpreterCheck[]): string {
    const required = `${MIN_PYTHON_VERSION.major}.${MIN_PYTHON_VERSION.minor}`;
    const tried = checks
        .map((check) => `${formatCommand(check.candidate.command)} (${describeSource(check.candidate.source)}): ${check.problem}`)
        .join('; ');
    return (
        `gradsight needs Python ${required} or newer to run its language server, but no suitable interpreter was found. ` +
        `Tried ${tried}. ` +
        `Set "${INTERPRETER_SETTING}" to a Python ${required}+ executable, or install Python ${required}+ ` +
        `(and select it in the Python extension if you use it).`
    );
}
