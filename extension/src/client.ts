import type { OutputChannel } from 'vscode';
import { LanguageClient, LanguageClientOptions, RevealOutputChannelOn } from 'vscode-languageclient/node';

import { buildServerOptions, DOCUMENT_SELECTOR } from './clientOptions';
import { ServerLaunch } from './server';

/**
 * Client id. vscode-languageclient reads the `<id>.trace.server` setting, so this id makes `gradsight.trace.server`
 * control message tracing.
 */
export const CLIENT_ID = 'gradsight';

/**
 * Creates the language client for a launch. Server stderr, `window/logMessage` notifications and the message trace
 * all go to the given output channel.
 */
export function createLanguageClient(launch: ServerLaunch, outputChannel: OutputChannel): LanguageClient {
    const clientOptions: LanguageClientOptions = {
        documentSelector: DOCUMENT_SELECTOR,
        outputChannel,
        traceOutputChannel: outputChannel,
        revealOutputChannelOn: RevealOutputChannelOn.Never,
    };
    return new LanguageClient(CLIENT_ID, 'gradsight', buildServerOptions(launch), clientOptions);
}
