// The Check Gradients command: finds the paused frame of the active Python debug session, runs the server's probe
// in it, lets the user choose the model, and sends the snapshot to the server for classification.

import type * as vscode from 'vscode';

import { describeError, Logger } from '../logger';
import { isPythonDebugType, PYTHON_DEBUG_TYPES } from './debugState';
import type { DebugPauseTracker } from './debugState';
import { askForModelExpression, chooseModel, ChoiceMemory } from './modelChoice';
import {
    EvaluateFailedError,
    EvaluateTimeoutError,
    evaluateProbeJson,
    EvaluationTarget,
    fillTemplate,
    formatDuration,
    ProbeOutputError,
    ProbeResultError,
} from './probe';
import {
    ANALYZE_SNAPSHOT_REQUEST,
    END_SESSION_REQUEST,
    parseCandidates,
    parseProbeExpressions,
    parseSnapshotAnalysis,
    PROBE_REQUEST,
    ProbeExpressions,
    ProtocolError,
} from './protocol';
import type { CheckResult } from './results';
import { GradsightServer, ServerNotRunningError } from './serverConnection';
import type { GradientsVscode } from './vscodeApi';

export const PROBE_TIMEOUT_SETTING = 'gradsight.probeTimeoutSeconds';
export const DEFAULT_PROBE_TIMEOUT_SECONDS = 30;

/** Buttons of the error notifications, each bound to what it does in register.ts. */
export type CheckErrorAction = 'Open Setting' | 'Show Logs' | 'Restart Server' | 'Enter Expression';

/** A failure the user can act on: the message names the problem and the next step, the actions offer it. */
export class GradientCheckError extends Error {
    constructor(
        message: string,
        readonly actions: CheckErrorAction[] = [],
    ) {
        super(message);
    }
}

/** Probe error codes that mean the model expression is wrong, so a remembered choice is dropped. */
const EXPRESSION_ERROR_CODES = new Set(['not-a-module', 'no-model', 'expression-failed']);

export interface CheckOptions {
    /** Ask for the model even when one is remembered or only one is found. */
    chooseModel?: boolean;
    /** Skip the search and ask for an expression at once. */
    enterExpression?: boolean;
}

type CheckerApi = Pick<GradientsVscode, 'debug' | 'window' | 'workspace' | 'Uri'>;

export interface GradientCheckerDependencies {
    api: CheckerApi;
    server: GradsightServer;
    pauseTracker: DebugPauseTracker;
    memory: ChoiceMemory;
    logger: Logger;
    /** Time limit for each `evaluate` request and each server request, in milliseconds. */
    timeoutMs(): number;
}

/** The frame the probe runs in, and the source files of the paused thread's stack. */
interface PausedFrame {
    frameId: number;
    sourcePaths: string[];
}

interface StackFrameResponse {
    stackFrames?: { id: number; source?: { path?: string } }[];
}

async function withTimeout<T>(promise: Thenable<T>, timeoutMs: number, onTimeout: () => Error): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(onTimeout()), timeoutMs);
    });
    try {
        return await Promise.race([Promise.resolve(promise), timeout]);
    } finally {
        clearTimeout(timer);
    }
}

export const MESSAGES = {
    noSession:
        'Check Gradients needs a paused Python debug session. Start debugging the training script with the Python ' +
        'debugger, pause it (for example at a breakpoint after loss.backward()), then run Check Gradients again.',
    notPython: (name: string, type: string) =>
        `The active debug session "${name}" has the debug type "${type}", but Check Gradients works only with the ` +
        `Python debugger (debug type ${PYTHON_DEBUG_TYPES.map((t) => `"${t}"`).join(' or ')}). Select a Python ` +
        'debug session in the Call Stack view and run Check Gradients again.',
    running:
        'The debugged program is running. Pause it, for example at a breakpoint after loss.backward(), and run ' +
        'Check Gradients again.',
    serverNotRunning:
        'The gradsight language server is not running, so the gradients cannot be checked. Run "gradsight: Restart ' +
        'Server", or open the logs to see why it stopped.',
    noModel:
        'No torch.nn.Module was found in the paused frame (its local and global variables and their attributes). ' +
        'Pause where the model is in scope, or enter an expression such as trainer.model.',
    timeout: (step: string, milliseconds: number) =>
        `The debugger did not respond within ${formatDuration(milliseconds)} while ${step}. A large model on a slow ` +
        `device can take longer: raise ${PROBE_TIMEOUT_SETTING}, or check that the debuggee is still paused.`,
} as const;

/** Runs checks and keeps, per debug session, the probe expressions the server handed out. */
export class GradientChecker {
    private readonly probes = new Map<string, ProbeExpressions>();

    constructor(private readonly deps: GradientCheckerDependencies) {}

    /**
     * Runs one check on the active debug session. Returns undefined when the user cancels a dialog, and throws a
     * GradientCheckError for every failure the user should see.
     */
    async check(options: CheckOptions = {}): Promise<CheckResult | undefined> {
        try {
            return await this.runCheck(options);
        } catch (error) {
            throw this.toUserError(error);
        }
    }

    /** Forgets a session's state and sends endSession, so the server drops the session's previous snapshot. */
    async endSession(sessionId: string): Promise<void> {
        this.probes.delete(sessionId);
        this.deps.memory.forget(sessionId);
        if (!this.deps.server.isRunning()) {
            return;
        }
        try {
            await this.deps.server.sendRequest(END_SESSION_REQUEST, { sessionId });
        } catch (error) {
            this.deps.logger.warn(`${END_SESSION_REQUEST} failed for debug session ${sessionId}: ${describeError(error)}`);
        }
    }

    private async runCheck(options: CheckOptions): Promise<CheckResult | undefined> {
        const { api, memory, logger } = this.deps;
        const session = api.debug.activeDebugSession;
        if (session === undefined) {
            throw new GradientCheckError(MESSAGES.noSession);
        }
        if (!isPythonDebugType(session.type)) {
            throw new GradientCheckError(MESSAGES.notPython(session.name, session.type));
        }
        if (!this.deps.server.isRunning()) {
            throw new ServerNotRunningError();
        }

        const frame = await this.findPausedFrame(session);
        const probe = await this.getProbe(session.id);
        const target: EvaluationTarget = { session, frameId: frame.frameId, timeoutMs: this.deps.timeoutMs() };
        logger.info(`Checking gradients in debug session "${session.name}" (${session.id}), frame ${frame.frameId}.`);

        // The install expression is cheap when the probe is already in the debuggee, and running it on every check
        // covers a debuggee that restarted.
        const installed = await evaluateProbeJson(target, probe.install, probe.readChunk, 'installing the gradsight probe');
        logger.info(`Probe installed in the debuggee: ${JSON.stringify(installed)}`);

        const modelExpression = await this.chooseModelExpression(session.id, target, probe, options);
        if (modelExpression === undefined) {
            logger.info('Check Gradients cancelled while choosing the model.');
            return undefined;
        }

        const snapshot = await this.takeSnapshot(session.id, target, probe, modelExpression);
        memory.set(session.id, modelExpression);

        const analysis = parseSnapshotAnalysis(
            await this.request(ANALYZE_SNAPSHOT_REQUEST, {
                sessionId: session.id,
                snapshot,
                sourceUris: this.collectSourceUris(frame),
                modelExpression,
            }),
        );
        logger.info(`Checked ${analysis.layers.length} layers of ${modelExpression}: ${analysis.findings.length} findings.`);
        return {
            sessionId: session.id,
            sessionName: session.name,
            modelExpression,
            analysis,
            checkedAt: new Date(),
            sessionEnded: false,
        };
    }

    /**
     * Evaluates the snapshot expression for the model. A remembered model expression that fails is forgotten, so
     * the next check shows the model choice again.
     */
    private async takeSnapshot(sessionId: string, target: EvaluationTarget, probe: ProbeExpressions, modelExpression: string): Promise<unknown> {
        const expression = fillTemplate(probe.snapshot, { model: modelExpression, optimizer: 'None' });
        try {
            return await evaluateProbeJson(target, expression, probe.readChunk, `reading the gradients of ${modelExpression}`);
        } catch (error) {
            if (error instanceof ProbeResultError && EXPRESSION_ERROR_CODES.has(error.code)) {
                this.deps.memory.forget(sessionId);
            }
            if (error instanceof EvaluateFailedError) {
                // debugpy rejects the whole expression, for example on a syntax error in the model expression.
                this.deps.memory.forget(sessionId);
                const reason = error.message.replace(/\.?\s*$/, '.');
                throw new GradientCheckError(`${reason} Check the model expression "${modelExpression}".`, ['Enter Expression', 'Show Logs']);
            }
            throw error;
        }
    }

    private async chooseModelExpression(
        sessionId: string,
        target: EvaluationTarget,
        probe: ProbeExpressions,
        options: CheckOptions,
    ): Promise<string | undefined> {
        const dialogs = this.deps.api.window;
        if (options.enterExpression) {
            return askForModelExpression(dialogs, this.deps.memory.get(sessionId));
        }
        const remembered = this.deps.memory.get(sessionId);
        if (remembered !== undefined && !options.chooseModel) {
            return remembered;
        }

        const candidates = parseCandidates(
            await evaluateProbeJson(target, probe.findCandidates, probe.readChunk, 'looking for models in the paused frame'),
        );
        const choice = await chooseModel(dialogs, candidates, options.chooseModel === true);
        if (choice === 'none-found') {
            throw new GradientCheckError(MESSAGES.noModel, ['Enter Expression']);
        }
        return choice;
    }

    private async getProbe(sessionId: string): Promise<ProbeExpressions> {
        const cached = this.probes.get(sessionId);
        if (cached !== undefined) {
            return cached;
        }
        const probe = parseProbeExpressions(await this.request(PROBE_REQUEST, undefined));
        this.probes.set(sessionId, probe);
        return probe;
    }

    private request(method: string, params: unknown): Promise<unknown> {
        const timeoutMs = this.deps.timeoutMs();
        return withTimeout(
            this.deps.server.sendRequest<unknown>(method, params),
            timeoutMs,
            () =>
                new GradientCheckError(
                    `The request ${method} to the gradsight language server timed out after ${formatDuration(timeoutMs)}. The logs may show why.`,
                    ['Show Logs'],
                ),
        );
    }

    /**
     * Finds the frame to evaluate in: the stack frame selected in the Call Stack view when it belongs to this
     * session, otherwise the top frame of the thread that stopped last, otherwise of the first stopped thread the
     * adapter lists.
     */
    private async findPausedFrame(session: vscode.DebugSession): Promise<PausedFrame> {
        const { api, pauseTracker } = this.deps;
        if (pauseTracker.isPaused(session.id) === false) {
            throw new GradientCheckError(MESSAGES.running);
        }

        let selectedFrameId: number | undefined;
        let threadIds: number[] = [];
        const item = api.debug.activeStackItem;
        if (item !== undefined && item.session.id === session.id) {
            threadIds = [item.threadId];
            if ('frameId' in item) {
                selectedFrameId = item.frameId;
            }
        }
        const lastStopped = pauseTracker.lastStoppedThread(session.id);
        if (threadIds.length === 0 && lastStopped !== undefined && lastStopped !== 0) {
            threadIds = [lastStopped];
        }
        if (threadIds.length === 0) {
            threadIds = await this.listThreads(session);
        }

        for (const threadId of threadIds) {
            const frames = await this.readStack(session, threadId);
            if (frames.length === 0) {
                continue;
            }
            const frameId = selectedFrameId ?? frames[0].id;
            const sourcePaths = frames.map((frame) => frame.source?.path).filter((path): path is string => typeof path === 'string');
            return { frameId, sourcePaths };
        }
        throw new GradientCheckError(MESSAGES.running);
    }

    private async listThreads(session: vscode.DebugSession): Promise<number[]> {
        const timeoutMs = this.deps.timeoutMs();
        const response = (await withTimeout(
            session.customRequest('threads'),
            timeoutMs,
            () => new EvaluateTimeoutError('listing the threads of the debuggee', timeoutMs),
        )) as { threads?: { id: number }[] } | undefined;
        return (response?.threads ?? []).map((thread) => thread.id);
    }

    /** Returns the thread's stack, or an empty list when the thread is running (the adapter rejects the request). */
    private async readStack(session: vscode.DebugSession, threadId: number): Promise<NonNullable<StackFrameResponse['stackFrames']>> {
        const timeoutMs = this.deps.timeoutMs();
        try {
            const response = (await withTimeout(
                session.customRequest('stackTrace', { threadId, startFrame: 0, levels: 50 }),
                timeoutMs,
                () => new EvaluateTimeoutError(`reading the stack of thread ${threadId}`, timeoutMs),
            )) as StackFrameResponse | undefined;
            return response?.stackFrames ?? [];
        } catch (error) {
            if (error instanceof EvaluateTimeoutError) {
                throw error;
            }
            this.deps.logger.info(`No stack for thread ${threadId} (it is probably running): ${describeError(error)}`);
            return [];
        }
    }

    /** Collects the paused stack's files and the open Python documents, where the server looks for layer definitions. */
    private collectSourceUris(frame: PausedFrame): string[] {
        const uris = new Set<string>();
        for (const path of frame.sourcePaths) {
            if (path.startsWith('/') || /^[A-Za-z]:[\\/]/.test(path)) {
                uris.add(this.deps.api.Uri.file(path).toString());
            }
        }
        for (const document of this.deps.api.workspace.textDocuments) {
            if (document.languageId === 'python' && document.uri.scheme === 'file') {
                uris.add(document.uri.toString());
            }
        }
        return [...uris];
    }

    /** Turns any failure into a GradientCheckError with a message and the actions that help. */
    private toUserError(error: unknown): GradientCheckError {
        const { logger } = this.deps;
        if (error instanceof GradientCheckError) {
            logger.warn(`Check Gradients: ${error.message}`);
            return error;
        }
        if (error instanceof ServerNotRunningError) {
            logger.error(`Check Gradients: ${error.message}`);
            return new GradientCheckError(MESSAGES.serverNotRunning, ['Restart Server', 'Show Logs']);
        }
        if (error instanceof EvaluateTimeoutError) {
            logger.error(`Check Gradients: ${error.message}`);
            return new GradientCheckError(MESSAGES.timeout(error.step, error.timeoutMs), ['Open Setting']);
        }
        if (error instanceof ProbeResultError) {
            logger.error(`Check Gradients: the probe returned the error ${error.code}: ${error.message}`);
            const actions: CheckErrorAction[] = EXPRESSION_ERROR_CODES.has(error.code) ? ['Enter Expression'] : [];
            return new GradientCheckError(error.message, actions);
        }
        if (error instanceof EvaluateFailedError) {
            logger.error(`Check Gradients: ${error.message}`);
            return new GradientCheckError(error.message, ['Show Logs']);
        }
        if (error instanceof ProbeOutputError || error instanceof ProtocolError) {
            logger.error(`Check Gradients: ${error.message}`);
            return new GradientCheckError(
                `gradsight received a result it cannot read (${error.message}). The probe and the server may be of different versions: reinstall the extension.`,
                ['Show Logs'],
            );
        }
        // An error response of the language server, such as an exception in its handler.
        logger.error(`Check Gradients failed: ${describeError(error)}`);
        return new GradientCheckError(`Check Gradients failed: ${describeError(error)}`, ['Show Logs']);
    }
}
