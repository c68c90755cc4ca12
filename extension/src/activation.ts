import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as vscode from 'vscode';

import { Logger } from './logger';
import {
    checkInterpreter,
    collectInterpreterCandidates,
    formatNoInterpreterMessage,
    InterpreterCandidate,
    InterpreterCheck,
    selectInterpreter,
} from './python';
import { createPythonExtensionInterpreterSource, ExtensionRegistry, loadPythonExtensionApi, PythonExtensionApi } from './pythonExtension';
import { buildServerLaunch, ServerClient, ServerLaunch, ServerManager } from './server';
import { CONFIG_SECTION, INTERPRETER_SETTING, readSettings } from './settings';

export const OUTPUT_CHANNEL_NAME = 'gradsight';
export const RESTART_COMMAND = 'gradsight.restart';
export const SHOW_LOGS_COMMAND = 'gradsight.showLogs';
export const OPEN_SETTING_ACTION = 'Open Setting';
export const SHOW_LOGS_ACTION = 'Show Logs';

/**
 * The members of the `vscode` module that activation uses. extension.ts passes the real module, and tests pass a
 * fake, so this file imports `vscode` for types only.
 */
export interface VscodeApi {
    window: Pick<typeof vscode.window, 'createOutputChannel' | 'showErrorMessage' | 'activeTextEditor'>;
    workspace: Pick<
        typeof vscode.workspace,
        'getConfiguration' | 'onDidChangeConfiguration' | 'workspaceFolders' | 'getWorkspaceFolder' | 'textDocuments'
    >;
    commands: Pick<typeof vscode.commands, 'registerCommand' | 'executeCommand'>;
    extensions: ExtensionRegistry;
}

export type LanguageClientFactory = (launch: ServerLaunch, outputChannel: vscode.LogOutputChannel) => ServerClient;

/** Process-level inputs, injectable so tests do not depend on the machine they run on. */
export interface HostEnvironment {
    platform: NodeJS.Platform;
    env: Record<string, string | undefined>;
    userHome: string;
    checkInterpreter(candidate: InterpreterCandidate): Promise<InterpreterCheck>;
}

export interface ActivatedExtension {
    outputChannel: vscode.LogOutputChannel;
    manager: ServerManager;
    /** Promise that settles when the first server start has succeeded or failed. */
    initialStart: Promise<void>;
    dispose(): Promise<void>;
}

function defaultHostEnvironment(): HostEnvironment {
    return {
        platform: process.platform,
        env: process.env,
        userHome: os.homedir(),
        checkInterpreter: (candidate) => checkInterpreter(candidate),
    };
}

/**
 * Picks the workspace folder whose interpreter and settings the server uses: the folder of the active Python
 * editor, else of any open Python document, else the first workspace folder.
 *
 * NOTE: one server serves every folder of a multi-root workspace, so Python files in the other folders are also
 * checked with this folder's interpreter.
 */
function findServerFolder(api: VscodeApi): vscode.WorkspaceFolder | undefined {
    const documents = [api.window.activeTextEditor?.document, ...api.workspace.textDocuments];
    for (const document of documents) {
        if (document?.languageId !== 'python') {
            continue;
        }
        const folder = api.workspace.getWorkspaceFolder(document.uri);
        if (folder !== undefined) {
            return folder;
        }
    }
    return api.workspace.workspaceFolders?.[0];
}

async function showNoInterpreterError(api: VscodeApi, outputChannel: vscode.OutputChannel, message: string): Promise<void> {
    const choice = await api.window.showErrorMessage(message, OPEN_SETTING_ACTION, SHOW_LOGS_ACTION);
    if (choice === OPEN_SETTING_ACTION) {
        await api.commands.executeCommand('workbench.action.openSettings', INTERPRETER_SETTING);
    } else if (choice === SHOW_LOGS_ACTION) {
        outputChannel.show();
    }
}

/**
 * Chooses the interpreter for the current workspace and builds the server launch. Returns undefined after showing
 * an error notification when no interpreter can run the server.
 */
async function resolveServerLaunch(
    api: VscodeApi,
    pythonApi: PythonExtensionApi | undefined,
    outputChannel: vscode.LogOutputChannel,
    bundledLibsDir: string,
    host: HostEnvironment,
): Promise<ServerLaunch | undefined> {
    const logger: Logger = outputChannel;
    const folder = findServerFolder(api);
    const folderPath = folder?.uri.scheme === 'file' ? folder.uri.fsPath : undefined;

    const settings = readSettings(api.workspace.getConfiguration(CONFIG_SECTION, folder?.uri), {
        workspaceFolder: folderPath,
        userHome: host.userHome,
        env: host.env,
    });
    const candidates = await collectInterpreterCandidates({
        pythonExtension: pythonApi === undefined ? undefined : createPythonExtensionInterpreterSource(pythonApi, folder?.uri),
        settingInterpreter: settings.interpreter,
        platform: host.platform,
        logger,
    });

    const selection = await selectInterpreter(candidates, logger, host.checkInterpreter);
    if (selection.selected === undefined) {
        const message = formatNoInterpreterMessage(selection.checks);
        logger.error(message);
        // The notification stays open until the user acts on it, so the start sequence does not wait for it.
        void showNoInterpreterError(api, outputChannel, message);
        return undefined;
    }

    return buildServerLaunch({
        interpreter: selection.selected.candidate.command,
        bundledLibsDir,
        baseEnv: host.env,
        cwd: folderPath,
        platform: host.platform,
    });
}

/**
 * Creates the output channel, registers commands and listeners, and starts the server without waiting for it.
 */
export async function activateExtension(
    api: VscodeApi,
    context: Pick<vscode.ExtensionContext, 'subscriptions' | 'extensionPath'>,
    createClient: LanguageClientFactory,
    host: HostEnvironment = defaultHostEnvironment(),
): Promise<ActivatedExtension> {
    const outputChannel = api.window.createOutputChannel(OUTPUT_CHANNEL_NAME, { log: true });
    context.subscriptions.push(outputChannel);

    const bundledLibsDir = path.join(context.extensionPath, 'bundled', 'libs');
    if (!fs.existsSync(bundledLibsDir)) {
        outputChannel.warn(
            `Bundled server libraries not found at ${bundledLibsDir}. The server starts only if the interpreter ` +
                'can import gradsight and pygls itself, as in a development checkout.',
        );
    }

    const pythonApi = await loadPythonExtensionApi(api.extensions, outputChannel);

    const manager = new ServerManager({
        logger: outputChannel,
        createClient: (launch) => createClient(launch, outputChannel),
        resolveLaunch: () => resolveServerLaunch(api, pythonApi, outputChannel, bundledLibsDir, host),
    });

    context.subscriptions.push(
        api.commands.registerCommand(RESTART_COMMAND, () => manager.restart(`${RESTART_COMMAND} command`)),
        api.commands.registerCommand(SHOW_LOGS_COMMAND, () => outputChannel.show()),
        api.workspace.onDidChangeConfiguration((event) => {
            if (event.affectsConfiguration(INTERPRETER_SETTING)) {
                void manager.restart(`${INTERPRETER_SETTING} changed`);
            }
        }),
    );
    if (pythonApi !== undefined) {
        context.subscriptions.push(
            pythonApi.environments.onDidChangeActiveEnvironmentPath(() => {
                void manager.restart("the Python extension's selected environment changed");
            }),
        );
    }

    const initialStart = manager.restart('extension activated');
    return {
        outputChannel,
        manager,
        initialStart,
        dispose: () => manager.dispose(),
    };
}
