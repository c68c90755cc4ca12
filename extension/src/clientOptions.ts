import type { DocumentSelector, Executable } from 'vscode-languageclient/node';

import { ServerLaunch } from './server';

/** Documents the server checks: Python files on disk and unsaved Python editors. */
export const DOCUMENT_SELECTOR: DocumentSelector = [
    { scheme: 'file', language: 'python' },
    { scheme: 'untitled', language: 'python' },
];

/**
 * Converts a launch to vscode-languageclient's server options. `transport` stays unset, which makes the client
 * talk to the process over stdio. Setting it to TransportKind.stdio would also append `--stdio` to the arguments,
 * and `gradsight lsp` rejects that argument.
 */
export function buildServerOptions(launch: ServerLaunch): Executable {
    return {
        command: launch.command,
        args: [...launch.args],
        options: { cwd: launch.cwd, env: launch.env },
    };
}
