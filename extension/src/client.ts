import * as vscode from 'vscode';
import { LanguageClient, LanguageClientOptions, RevealOutputChannelOn } from 'vscode-languageclient/node';

import { buildServerOptions, DOCUMENT_SELECTOR } from './clientOptions';
import { ServerLaunch } from './server';
import { buildInitializationOptions, CONFIG_SECTION, readCheckerSettings } from './settings';

/**
 * Client id. vscode-languageclient reads the `<id>.trace.server` setting, so this id makes `gradsight.trace.server`
 * control message tracing.
 */
export const CLIENT_ID = 'gradsight';

/**
 * Creates the language client for a launch. Server stderr, `window/logMessage` notifications and the message trace
 * all go to the given output channel.
 */
export function createLanguageClient(launch: ServerLaunch, outputChannel: vscode.OutputChannel): LanguageClient {
    const clientOptions: LanguageClientOptions = {
        documentSelector: DOCUMENT_SELECTOR,
        // The checker settings go to the server at start, and again on every change of the `gradsight` section.
        initializationOptions: () =>
            buildInitializationOptions(readCheckerSettings(vscode.workspace.getConfiguration(CONFIG_SECTION))),
        synchronize: { configurationSection: CONFIG_SECTION },
        outputChannel,
        traceOutputChannel: outputChannel,
        revealOutputChannelOn: RevealOutputChannelOn.Never,
    };
    return new LanguageClient(CLIENT_ID, 'gradsight', buildServerOptions(launch), clientOptions);
}
