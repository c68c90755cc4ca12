import * as vscode from 'vscode';

import { activateExtension, ActivatedExtension } from './activation';
import { createLanguageClient } from './client';

let activated: ActivatedExtension | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    activated = await activateExtension(vscode, context, createLanguageClient);
}

export async function deactivate(): Promise<void> {
    const current = activated;
    activated = undefined;
    await current?.dispose();
}
