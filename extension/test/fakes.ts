// Test doubles. FakeClient replaces vscode-languageclient's LanguageClient, and FakeVscode replaces the `vscode`
// module, which exists only inside a VS Code extension host. Everything else in the tests is the real code.

import type * as vscode from 'vscode';

import type { VscodeApi } from '../src/activation';
import type { Logger } from '../src/logger';
import type { PythonExtensionApi } from '../src/pythonExtension';
import type { ServerClient, ServerLaunch } from '../src/server';

export interface Deferred<T> {
    promise: Promise<T>;
    resolve(value: T): void;
    reject(error: unknown): void;
}

export function createDeferred<T = void>(): Deferred<T> {
    let resolve!: (value: T) => void;
    let reject!: (error: unknown) => void;
    const promise = new Promise<T>((innerResolve, innerReject) => {
        resolve = innerResolve;
        reject = innerReject;
    });
    return { promise, resolve, reject };
}

/** Lets every pending promise callback run. */
export async function flushPromises(): Promise<void> {
    for (let i = 0; i < 10; i++) {
        await new Promise((resolve) => setImmediate(resolve));
    }
}

export class RecordingLogger implements Logger {
    readonly lines: string[] = [];

    info(message: string): void {
        this.lines.push(`info: ${message}`);
    }

    warn(message: string): void {
        this.lines.push(`warn: ${message}`);
    }

    error(message: string): void {
        this.lines.push(`error: ${message}`);
    }

    matching(level: 'info' | 'warn' | 'error', text: string): string[] {
        return this.lines.filter((line) => line.startsWith(`${level}: `) && line.includes(text));
    }
}

/** How a FakeClient's start() behaves: resolve at once, reject at once, or wait for the test to settle it. */
export type StartBehavior = 'succeed' | 'fail' | 'manual';

/** Stand-in for vscode-languageclient's LanguageClient. Records start and dispose calls in a shared event list. */
export class FakeClient implements ServerClient {
    readonly startGate = createDeferred<void>();
    startCalls = 0;
    disposeCalls = 0;

    constructor(
        readonly id: number,
        readonly launch: ServerLaunch,
        private readonly events: string[],
        private readonly behavior: StartBehavior,
        private readonly disposeError?: Error,
    ) {}

    start(): Promise<void> {
        this.startCalls++;
        this.events.push(`start ${this.id}`);
        if (this.behavior === 'succeed') {
            return Promise.resolve();
        }
        if (this.behavior === 'fail') {
            return Promise.reject(new Error(`server ${this.id} exited with code 1`));
        }
        return this.startGate.promise;
    }

    dispose(): Promise<void> {
        this.disposeCalls++;
        this.events.push(`dispose ${this.id}`);
        return this.disposeError === undefined ? Promise.resolve() : Promise.reject(this.disposeError);
    }
}

/** Creates FakeClients in order, taking each one's start behavior from a list (the last entry repeats). */
export class FakeClientFactory {
    readonly clients: FakeClient[] = [];
    readonly events: string[] = [];

    constructor(private readonly behaviors: StartBehavior[] = ['succeed']) {}

    create = (launch: ServerLaunch): FakeClient => {
        const behavior = this.behaviors[Math.min(this.clients.length, this.behaviors.length - 1)];
        const client = new FakeClient(this.clients.length + 1, launch, this.events, behavior);
        this.clients.push(client);
        return client;
    };
}

export interface FakeUri {
    scheme: string;
    fsPath: string;
    path: string;
    toString(): string;
}

export function fileUri(fsPath: string): FakeUri {
    return { scheme: 'file', fsPath, path: fsPath, toString: () => `file://${fsPath}` };
}

export interface FakeWorkspaceFolder {
    uri: FakeUri;
    name: string;
    index: number;
}

export function workspaceFolder(fsPath: string, index: number): FakeWorkspaceFolder {
    return { uri: fileUri(fsPath), name: fsPath.split('/').pop() ?? fsPath, index };
}

export interface FakeDocument {
    uri: FakeUri;
    languageId: string;
}

/** Stand-in for a `LogOutputChannel`: keeps the lines and counts show() calls. */
export class FakeLogOutputChannel extends RecordingLogger {
    showCalls = 0;
    disposed = false;

    constructor(readonly name: string) {
        super();
    }

    show(): void {
        this.showCalls++;
    }

    append(value: string): void {
        this.lines.push(value);
    }

    appendLine(value: string): void {
        this.lines.push(value);
    }

    debug(message: string): void {
        this.lines.push(`debug: ${message}`);
    }

    trace(message: string): void {
        this.lines.push(`trace: ${message}`);
    }

    dispose(): void {
        this.disposed = true;
    }
}

type Listener<T> = (event: T) => unknown;

export class FakeEvent<T> {
    private readonly listeners: Listener<T>[] = [];

    readonly event = (listener: Listener<T>): { dispose(): void } => {
        this.listeners.push(listener);
        return {
            dispose: () => {
                const index = this.listeners.indexOf(listener);
                if (index >= 0) {
                    this.listeners.splice(index, 1);
                }
            },
        };
    };

    fire(event: T): void {
        for (const listener of [...this.listeners]) {
            listener(event);
        }
    }

    get listenerCount(): number {
        return this.listeners.length;
    }
}

/** Stand-in for the Python extension's exported API, returning one interpreter per workspace folder path. */
export class FakePythonExtension {
    readonly environmentChanged = new FakeEvent<unknown>();
    readonly requestedResources: (FakeUri | undefined)[] = [];

    constructor(readonly interpreterByFolder: Record<string, string | undefined>) {}

    get api(): PythonExtensionApi {
        const environments = {
            getActiveEnvironmentPath: (resource?: unknown) => {
                const uri = resource as FakeUri | undefined;
                this.requestedResources.push(uri);
                return { id: uri?.fsPath ?? 'global', path: uri?.fsPath ?? 'global' };
            },
            resolveEnvironment: async (environment: unknown) => {
                const folderPath = (environment as { path: string }).path;
                const executable = this.interpreterByFolder[folderPath];
                return { executable: { uri: executable === undefined ? undefined : fileUri(executable) } };
            },
            onDidChangeActiveEnvironmentPath: this.environmentChanged.event,
        };
        return { environments } as unknown as PythonExtensionApi;
    }
}

/** Stand-in for the parts of the `vscode` module listed in VscodeApi. */
export class FakeVscode {
    readonly outputChannels: FakeLogOutputChannel[] = [];
    readonly commands = new Map<string, (...args: unknown[]) => unknown>();
    readonly executedCommands: unknown[][] = [];
    readonly errorMessages: { message: string; items: string[] }[] = [];
    readonly configurationScopes: unknown[] = [];
    readonly configurationChanged = new FakeEvent<{ affectsConfiguration(section: string): boolean }>();
    readonly extensions = new Map<string, { isActive: boolean; exports: unknown; activate(): Promise<unknown> }>();
    /** Button the simulated user clicks on the next error notification; undefined dismisses it. */
    errorChoice: string | undefined;
    settings: Record<string, unknown> = {};
    workspaceFolders: FakeWorkspaceFolder[] = [];
    textDocuments: FakeDocument[] = [];
    activeDocument: FakeDocument | undefined;

    installPythonExtension(python: FakePythonExtension): void {
        this.extensions.set('ms-python.python', {
            isActive: false,
            exports: undefined,
            activate: async () => python.api,
        });
    }

    fireConfigurationChange(changedSections: string[]): void {
        this.configurationChanged.fire({
            affectsConfiguration: (section: string) =>
                changedSections.some((changed) => changed === section || changed.startsWith(`${section}.`)),
        });
    }

    get outputChannel(): FakeLogOutputChannel {
        return this.outputChannels[0];
    }

    get api(): VscodeApi {
        const fake = this;
        const api = {
            window: {
                createOutputChannel: (name: string) => {
                    const channel = new FakeLogOutputChannel(name);
                    fake.outputChannels.push(channel);
                    return channel;
                },
                showErrorMessage: async (message: string, ...items: string[]) => {
                    fake.errorMessages.push({ message, items });
                    return fake.errorChoice;
                },
                get activeTextEditor() {
                    return fake.activeDocument === undefined ? undefined : { document: fake.activeDocument };
                },
            },
            workspace: {
                getConfiguration: (section: string, scope: unknown) => {
                    fake.configurationScopes.push(scope);
                    return { get: (key: string) => fake.settings[`${section}.${key}`] };
                },
                onDidChangeConfiguration: fake.configurationChanged.event,
                get workspaceFolders() {
                    return fake.workspaceFolders.length === 0 ? undefined : fake.workspaceFolders;
                },
                getWorkspaceFolder: (uri: FakeUri) =>
                    fake.workspaceFolders.find((folder) => uri.fsPath.startsWith(`${folder.uri.fsPath}/`)),
                get textDocuments() {
                    return fake.textDocuments;
                },
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
            extensions: {
                getExtension: (extensionId: string) => fake.extensions.get(extensionId),
            },
        };
        return api as unknown as VscodeApi;
    }
}

/** Extension context with the two members activation uses. */
export function fakeContext(extensionPath: string): Pick<vscode.ExtensionContext, 'subscriptions' | 'extensionPath'> {
    return { subscriptions: [], extensionPath };
}
