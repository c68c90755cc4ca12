// Test doubles for the Check Gradients feature. The `vscode` module exists only inside a VS Code extension host, so
// these classes stand in for the parts of it that the feature uses (tree items, icons, Markdown, diagnostics, the
// debug and window namespaces). FakeDebugSession replaces a debugpy session and FakeServer the language client.
// The feature's own code under test is the real code.

import type { GradientsVscode } from '../src/gradients/vscodeApi';
import type { GradsightServer } from '../src/gradients/serverConnection';
import { createDeferred, fileUri, FakeEvent } from './fakes';

export class FakeThemeColor {
    constructor(readonly id: string) {}
}

export class FakeThemeIcon {
    constructor(
        readonly id: string,
        readonly color?: FakeThemeColor,
    ) {}
}

export class FakeMarkdownString {
    isTrusted?: boolean;
    supportHtml?: boolean;

    constructor(public value = '') {}
}

export class FakeTreeItem {
    id?: string;
    description?: string;
    tooltip?: FakeMarkdownString | string;
    iconPath?: FakeThemeIcon;
    command?: { command: string; title: string; arguments?: unknown[] };
    contextValue?: string;
    accessibilityInformation?: { label: string };

    constructor(
        readonly label: string,
        readonly collapsibleState?: number,
    ) {}
}

export class FakePosition {
    constructor(
        readonly line: number,
        readonly character: number,
    ) {}
}

export class FakeRange {
    readonly start: FakePosition;
    readonly end: FakePosition;

    constructor(startLine: number, startCharacter: number, endLine: number, endCharacter: number) {
        this.start = new FakePosition(startLine, startCharacter);
        this.end = new FakePosition(endLine, endCharacter);
    }
}

export class FakeDiagnostic {
    source?: string;
    code?: string;

    constructor(
        readonly range: FakeRange,
        readonly message: string,
        readonly severity: number,
    ) {}
}

export class FakeCodeLens {
    constructor(
        readonly range: FakeRange,
        readonly command?: { title: string; command: string },
    ) {}
}

export class FakeEventEmitter<T> {
    private readonly inner = new FakeEvent<T>();
    readonly event = this.inner.event;
    fireCount = 0;

    fire(value: T): void {
        this.fireCount++;
        this.inner.fire(value);
    }

    dispose(): void {}
}

/** Stand-in for a DiagnosticCollection that keeps the diagnostics per URI string. */
export class FakeDiagnosticCollection {
    readonly entries = new Map<string, FakeDiagnostic[]>();
    disposed = false;

    set(uri: { toString(): string }, diagnostics: FakeDiagnostic[]): void {
        this.entries.set(uri.toString(), diagnostics);
    }

    clear(): void {
        this.entries.clear();
    }

    dispose(): void {
        this.disposed = true;
    }
}

/** Handler of one DAP request in a FakeDebugSession: returns the response body or throws the adapter's error. */
export type DapHandler = (args: Record<string, unknown>) => unknown;

/**
 * Stand-in for a debugpy session. `handlers` returns the response body of each DAP request by command, and
 * `evaluate` the body of each evaluate request by expression. Every request is recorded.
 */
export class FakeDebugSession {
    readonly requests: { command: string; args: Record<string, unknown> }[] = [];
    readonly handlers = new Map<string, DapHandler>();
    evaluate: (expression: string, args: Record<string, unknown>) => unknown = () => {
        throw new Error('no evaluate handler');
    };

    constructor(
        readonly id = 'session-1',
        readonly type = 'debugpy',
        readonly name = 'Python: train.py',
    ) {
        this.handlers.set('threads', () => ({ threads: [{ id: 1, name: 'MainThread' }] }));
        this.handlers.set('stackTrace', () => ({
            stackFrames: [
                { id: 7, name: '<module>', source: { path: '/home/ada/project/train.py' } },
                { id: 8, name: 'run', source: { path: '<frozen runpy>' } },
            ],
        }));
    }

    async customRequest(command: string, args?: unknown): Promise<unknown> {
        const requestArgs = (args ?? {}) as Record<string, unknown>;
        this.requests.push({ command, args: requestArgs });
        if (command === 'evaluate') {
            return this.evaluate(String(requestArgs.expression), requestArgs);
        }
        const handler = this.handlers.get(command);
        if (handler === undefined) {
            throw new Error(`unexpected DAP request ${command}`);
        }
        return handler(requestArgs);
    }

    evaluatedExpressions(): string[] {
        return this.requests.filter((request) => request.command === 'evaluate').map((request) => String(request.args.expression));
    }
}

/** Stand-in for the language client: returns each request's result from a table of handlers and records it. */
export class FakeServer implements GradsightServer {
    running = true;
    readonly requests: { method: string; params: unknown }[] = [];
    readonly handlers = new Map<string, (params: unknown) => unknown>();

    isRunning(): boolean {
        return this.running;
    }

    async sendRequest<R>(method: string, params?: unknown): Promise<R> {
        this.requests.push({ method, params });
        const handler = this.handlers.get(method);
        if (handler === undefined) {
            throw new Error(`unexpected request ${method}`);
        }
        return handler(params) as R;
    }
}

/** Scripted results of the dialogs: each call takes the next entry of its list. */
export interface DialogScript {
    quickPick: ((items: { label: string }[]) => unknown)[];
    inputBox: (string | undefined)[];
}

/** Stand-in for the parts of the `vscode` module in GradientsVscode, recording what the feature does. */
export class FakeGradientsVscode {
    readonly errorMessages: { message: string; items: string[] }[] = [];
    readonly quickPicks: { items: { label: string }[]; options: unknown }[] = [];
    readonly inputBoxes: unknown[] = [];
    readonly openedDocuments: { uri: string; options: unknown }[] = [];
    readonly executedCommands: unknown[][] = [];
    readonly commands = new Map<string, (...args: unknown[]) => unknown>();
    readonly diagnosticCollections: FakeDiagnosticCollection[] = [];
    readonly treeViews: { id: string; revealed: unknown[] }[] = [];
    readonly webviewPanels: unknown[] = [];
    readonly trackerFactories = new Map<string, { createDebugAdapterTracker(session: { id: string }): unknown }>();
    readonly activeSessionChanged = new FakeEvent<unknown>();
    readonly sessionTerminated = new FakeEvent<{ id: string }>();
    readonly configurationChanged = new FakeEvent<{ affectsConfiguration(section: string): boolean }>();
    readonly dialogs: DialogScript = { quickPick: [], inputBox: [] };
    /** Button the simulated user clicks on the next error notification; undefined dismisses it. */
    errorChoice: string | undefined;
    errorShown = createDeferred<void>();
    settings: Record<string, unknown> = {};
    activeDebugSession: FakeDebugSession | undefined;
    activeStackItem: unknown;
    textDocuments: { uri: ReturnType<typeof fileUri>; languageId: string }[] = [];

    get api(): GradientsVscode {
        const fake = this;
        const api = {
            window: {
                showErrorMessage: async (message: string, ...items: string[]) => {
                    fake.errorMessages.push({ message, items });
                    fake.errorShown.resolve();
                    return fake.errorChoice;
                },
                showWarningMessage: async () => undefined,
                showQuickPick: async (items: { label: string }[], options: unknown) => {
                    fake.quickPicks.push({ items, options });
                    const answer = fake.dialogs.quickPick.shift();
                    return answer === undefined ? undefined : answer(items);
                },
                showInputBox: async (options: unknown) => {
                    fake.inputBoxes.push(options);
                    return fake.dialogs.inputBox.shift();
                },
                createTreeView: (id: string) => {
                    const view = { id, revealed: [] as unknown[] };
                    fake.treeViews.push(view);
                    return {
                        reveal: async (element: unknown) => {
                            view.revealed.push(element);
                        },
                        dispose: () => undefined,
                    };
                },
                createWebviewPanel: () => {
                    throw new Error('the fake has no webview panels');
                },
                withProgress: async (_options: unknown, task: () => Promise<unknown>) => task(),
                showTextDocument: async (uri: { toString(): string }, options: unknown) => {
                    fake.openedDocuments.push({ uri: uri.toString(), options });
                    return {};
                },
                activeTextEditor: undefined,
            },
            debug: {
                get activeDebugSession() {
                    return fake.activeDebugSession;
                },
                get activeStackItem() {
                    return fake.activeStackItem;
                },
                onDidChangeActiveDebugSession: fake.activeSessionChanged.event,
                onDidTerminateDebugSession: fake.sessionTerminated.event,
                registerDebugAdapterTrackerFactory: (type: string, factory: { createDebugAdapterTracker(session: { id: string }): unknown }) => {
                    fake.trackerFactories.set(type, factory);
                    return { dispose: () => fake.trackerFactories.delete(type) };
                },
            },
            languages: {
                createDiagnosticCollection: () => {
                    const collection = new FakeDiagnosticCollection();
                    fake.diagnosticCollections.push(collection);
                    return collection;
                },
                registerCodeLensProvider: () => ({ dispose: () => undefined }),
            },
            commands: {
                registerCommand: (command: string, callback: (...args: unknown[]) => unknown) => {
                    fake.commands.set(command, callback);
                    return { dispose: () => fake.commands.delete(command) };
                },
                executeCommand: async (...args: unknown[]) => {
                    fake.executedCommands.push(args);
                    return undefined;
                },
            },
            workspace: {
                getConfiguration: () => ({
                    get: <T>(key: string, defaultValue?: T) => (key in fake.settings ? (fake.settings[key] as T) : defaultValue),
                }),
                onDidChangeConfiguration: fake.configurationChanged.event,
                get textDocuments() {
                    return fake.textDocuments;
                },
            },
            Uri: {
                parse: (value: string) => ({ toString: () => value }),
                file: (path: string) => fileUri(path),
                joinPath: (base: { path: string }, ...parts: string[]) => fileUri([base.path, ...parts].join('/')),
            },
            Range: FakeRange,
            Selection: FakeRange,
            TreeItem: FakeTreeItem,
            TreeItemCollapsibleState: { None: 0, Collapsed: 1, Expanded: 2 },
            ThemeIcon: FakeThemeIcon,
            ThemeColor: FakeThemeColor,
            MarkdownString: FakeMarkdownString,
            Diagnostic: FakeDiagnostic,
            DiagnosticSeverity: { Error: 0, Warning: 1, Information: 2, Hint: 3 },
            EventEmitter: FakeEventEmitter,
            CodeLens: FakeCodeLens,
            ViewColumn: { One: 1, Beside: -2 },
            ProgressLocation: { SourceControl: 1, Window: 10, Notification: 15 },
            DebugStackFrame: class {},
            DebugThread: class {},
        };
        return api as unknown as GradientsVscode;
    }
}

/** The expressions of a `gradsight/probe` response, shaped like the server's but short. */
export const PROBE_EXPRESSIONS = {
    version: '1+test',
    install: 'INSTALL',
    findCandidates: 'FIND',
    snapshot: 'SNAPSHOT(lambda: ({model}), lambda: ({optimizer}))',
    readChunk: 'READ({token}, {index})',
};

/** Builds a snapshot analysis like the server's for a small VGG trained with a learning rate of 1e-10. */
export function tinyLrAnalysis(): Record<string, unknown> {
    const location = (line: number) => ({
        uri: 'file:///home/ada/project/train.py',
        range: { start: { line, character: 4 }, end: { line, character: 30 } },
    });
    return {
        model: { type: 'Sequential', parameterCount: 23_466, trainableCount: 23_466, devices: ['cpu'], optimizers: [{ type: 'SGD', names: ['optimizer'] }], check: 1 },
        layers: [
            {
                name: '0.0',
                type: 'Conv2d',
                status: 'tiny-update',
                severity: 'warning',
                gradNorm: 0.0123,
                weightNorm: 2.5,
                meanAbsGrad: 0.000456,
                maxAbsGrad: 0.0789,
                updateRatio: 4.9e-13,
                lr: 1e-10,
                tooltip: '0.0 (Conv2d): tiny-update\nexpected update-to-weight ratio per step 4.9e-13 (healthy: near 1e-3)',
                parameters: [
                    { name: 'weight', shape: [16, 3, 3, 3], status: 'tiny-update', gradNorm: 0.012, updateRatio: 4.8e-13, requiresGrad: true },
                    { name: 'bias', shape: [16], status: 'tiny-update', gradNorm: 0.001, updateRatio: 5e-13, requiresGrad: true },
                ],
                location: location(8),
            },
            {
                name: '4',
                type: 'Linear',
                status: 'ok',
                severity: null,
                gradNorm: 0.5,
                weightNorm: 1.2,
                meanAbsGrad: 0.002,
                maxAbsGrad: 0.1,
                updateRatio: 0.004,
                lr: 0.01,
                tooltip: '',
                parameters: [],
                location: null,
            },
        ],
        findings: [
            {
                code: 'GS909',
                severity: 'warning',
                message: 'layer 0.0: expected update-to-weight ratio 4.9e-13 is below 1e-7',
                layer: '0.0',
                location: location(8),
            },
            { code: 'GS914', severity: 'error', message: 'tensor scale requires grad but is not a registered parameter', layer: 'scale', location: null },
        ],
        notes: ['No optimizer step was seen between the checks.'],
    };
}
