import * as vscode from 'vscode';

import { activateExtension, ActivatedExtension } from './activation';
import { createLanguageClient } from './client';
import { registerGradients } from './gradients/register';
import { LanguageClientTracker } from './gradients/serverConnection';

let activated: ActivatedExtension | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    // The Check Gradients feature sends its requests to the client created last.
    const clients = new LanguageClientTracker();
    activated = await activateExtension(vscode, context, (launch, outputChannel) =>
        clients.track(createLanguageClient(launch, outputChannel)),
    );
    registerGradients(vscode, context, { server: clients, logger: activated.outputChannel });
}

export async function deactivate(): Promise<void> {
    const current = activated;
    activated = undefined;
    await current?.dispose();
}
