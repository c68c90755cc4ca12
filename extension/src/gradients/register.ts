// Registers the Check Gradients feature: its commands, the Gradients view, the Gradient Flow panel, the runtime
// diagnostics, the code lens and the debug adapter trackers that tell whether a Python session is paused.

import type * as vscode from 'vscode';

import { describeError, Logger } from '../logger';
import { GradientFlowPanel } from './chart';
import {
    CheckErrorAction,
    CheckOptions,
    DEFAULT_PROBE_TIMEOUT_SECONDS,
    GradientChecker,
    GradientCheckError,
    PROBE_TIMEOUT_SETTING,
} from './check';
import { CHECK_GRADIENTS_COMMAND, TrainingLoopCodeLensProvider } from './codeLens';
import { DebugPauseTracker, isPythonDebugType, PYTHON_DEBUG_TYPES } from './debugState';
import { ChoiceMemory } from './modelChoice';
import { parseLocation, SourceLocation } from './protocol';
import type { CheckResult } from './results';
import { RuntimeDiagnostics, toVscodeRange } from './runtimeDiagnostics';
import type { GradsightServer } from './serverConnection';
import { GRADIENTS_VIEW_ID, GradientsTreeProvider, OPEN_LOCATION_COMMAND } from './treeView';
import type { GradientsVscode } from './vscodeApi';

export const CHOOSE_MODEL_COMMAND = 'gradsight.checkGradientsOfModel';
export const SHOW_GRADIENT_FLOW_COMMAND = 'gradsight.showGradientFlow';
export const CODE_LENS_SETTING = 'gradsight.checkGradientsCodeLens';

/** Context key that is true while the active debug session is a paused Python session. */
export const PAUSED_CONTEXT_KEY = 'gradsight.pythonDebugPaused';
/** Context key that is true once a check has produced a result. */
export const HAS_RESULT_CONTEXT_KEY = 'gradsight.hasGradients';

const RESTART_SERVER_COMMAND = 'gradsight.restart';
const SHOW_LOGS_COMMAND = 'gradsight.showLogs';

export interface GradientsDependencies {
    server: GradsightServer;
    logger: Logger;
}

/** The parts that registerGradients created, for the tests and for extension.ts. */
export interface GradientsFeature {
    checker: GradientChecker;
    tree: GradientsTreeProvider;
    pauseTracker: DebugPauseTracker;
    codeLens: TrainingLoopCodeLensProvider;
    /** Runs the Check Gradients command as the palette does, with its notifications. */
    runCheck(options?: CheckOptions): Promise<CheckResult | undefined>;
}

function readTimeoutMs(api: Pick<GradientsVscode, 'workspace'>): number {
    const seconds = api.workspace.getConfiguration().get<number>(PROBE_TIMEOUT_SETTING, DEFAULT_PROBE_TIMEOUT_SECONDS);
    return (typeof seconds === 'number' && seconds > 0 ? seconds : DEFAULT_PROBE_TIMEOUT_SECONDS) * 1000;
}

export function registerGradients(
    api: GradientsVscode,
    context: Pick<vscode.ExtensionContext, 'subscriptions' | 'extensionUri'>,
    deps: GradientsDependencies,
): GradientsFeature {
    const { logger } = deps;
    const pauseTracker = new DebugPauseTracker();
    const memory = new ChoiceMemory();
    const checker = new GradientChecker({
        api,
        server: deps.server,
        pauseTracker,
        memory,
        logger,
        timeoutMs: () => readTimeoutMs(api),
    });

    const tree = new GradientsTreeProvider(api);
    const treeView = api.window.createTreeView(GRADIENTS_VIEW_ID, { treeDataProvider: tree, showCollapseAll: true });
    const diagnostics = new RuntimeDiagnostics(api);

    async function openLocation(location: SourceLocation): Promise<void> {
        try {
            await api.window.showTextDocument(api.Uri.parse(location.uri), {
                selection: toVscodeRange(api, location.range),
                viewColumn: api.ViewColumn.One,
                preview: true,
            });
        } catch (error) {
            logger.error(`Failed to open ${location.uri}: ${describeError(error)}`);
            void api.window.showErrorMessage(`gradsight could not open ${location.uri}: ${describeError(error)}`);
        }
    }

    const chart = new GradientFlowPanel(api, context.extensionUri, (location) => openLocation(location));

    const isPythonSessionPaused = (): boolean => {
        const session = api.debug.activeDebugSession;
        return session !== undefined && isPythonDebugType(session.type) && pauseTracker.isPaused(session.id) === true;
    };
    const codeLens = new TrainingLoopCodeLensProvider(
        api,
        () => api.workspace.getConfiguration().get<boolean>(CODE_LENS_SETTING, true) !== false && isPythonSessionPaused(),
    );

    const updatePausedState = (): void => {
        void api.commands.executeCommand('setContext', PAUSED_CONTEXT_KEY, isPythonSessionPaused());
        codeLens.refresh();
    };

    async function handleAction(action: CheckErrorAction | undefined): Promise<void> {
        switch (action) {
            case 'Open Setting':
                await api.commands.executeCommand('workbench.action.openSettings', PROBE_TIMEOUT_SETTING);
                break;
            case 'Show Logs':
                await api.commands.executeCommand(SHOW_LOGS_COMMAND);
                break;
            case 'Restart Server':
                await api.commands.executeCommand(RESTART_SERVER_COMMAND);
                break;
            case 'Enter Expression':
                await runCheck({ enterExpression: true });
                break;
            case undefined:
                break;
        }
    }

    function showResult(result: CheckResult): void {
        tree.show(result);
        diagnostics.show(result);
        chart.update(result);
        void api.commands.executeCommand('setContext', HAS_RESULT_CONTEXT_KEY, true);
        const modelNode = tree.modelNode;
        if (modelNode !== undefined) {
            // Reveal makes the Gradients view visible when the command ran from the palette or a code lens.
            Promise.resolve(treeView.reveal(modelNode, { select: false, focus: false, expand: true })).catch((error: unknown) =>
                logger.warn(`Could not reveal the Gradients view: ${describeError(error)}`),
            );
        }
    }

    let running: Promise<CheckResult | undefined> | undefined;

    async function runCheck(options: CheckOptions = {}): Promise<CheckResult | undefined> {
        if (running !== undefined) {
            logger.info('Check Gradients is already running, so the new request waits for it.');
            return running;
        }
        running = (async () => {
            try {
                const result = await api.window.withProgress(
                    { location: { viewId: GRADIENTS_VIEW_ID }, title: 'Checking gradients' },
                    () => checker.check(options),
                );
                if (result !== undefined) {
                    showResult(result);
                }
                return result;
            } catch (error) {
                const checkError = error instanceof GradientCheckError ? error : new GradientCheckError(describeError(error), ['Show Logs']);
                void api.window
                    .showErrorMessage(checkError.message, ...checkError.actions)
                    .then((choice) => handleAction(choice as CheckErrorAction | undefined));
                return undefined;
            } finally {
                running = undefined;
            }
        })();
        return running;
    }

    context.subscriptions.push(
        treeView,
        diagnostics,
        codeLens,
        { dispose: () => chart.dispose() },
        ...PYTHON_DEBUG_TYPES.map((type) =>
            api.debug.registerDebugAdapterTrackerFactory(type, {
                createDebugAdapterTracker: (session) => pauseTracker.createTracker(session.id),
            }),
        ),
        pauseTracker.onDidChange(updatePausedState),
        api.debug.onDidChangeActiveDebugSession(updatePausedState),
        api.debug.onDidTerminateDebugSession((session) => {
            pauseTracker.forget(session.id);
            diagnostics.clearSession(session.id);
            tree.markSessionEnded(session.id);
            chart.update(tree.current);
            void checker.endSession(session.id);
        }),
        api.languages.registerCodeLensProvider(
            [
                { scheme: 'file', language: 'python' },
                { scheme: 'untitled', language: 'python' },
            ],
            codeLens,
        ),
        api.workspace.onDidChangeConfiguration((event) => {
            if (event.affectsConfiguration(CODE_LENS_SETTING)) {
                codeLens.refresh();
            }
        }),
        api.commands.registerCommand(CHECK_GRADIENTS_COMMAND, () => runCheck()),
        api.commands.registerCommand(CHOOSE_MODEL_COMMAND, () => runCheck({ chooseModel: true })),
        api.commands.registerCommand(SHOW_GRADIENT_FLOW_COMMAND, () => chart.show(tree.current)),
        api.commands.registerCommand(OPEN_LOCATION_COMMAND, (value: unknown) => {
            const location = parseLocation(value);
            return location === null ? undefined : openLocation(location);
        }),
    );
    updatePausedState();

    return { checker, tree, pauseTracker, codeLens, runCheck };
}
