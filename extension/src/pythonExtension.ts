import type { Event, Extension, Uri, WorkspaceFolder } from 'vscode';

import { describeError, Logger } from './logger';
import { PythonExtensionInterpreterSource } from './python';

export const PYTHON_EXTENSION_ID = 'ms-python.python';

/** Id and path of an environment, as `getActiveEnvironmentPath` returns it. The path may be a folder. */
export interface EnvironmentPath {
    id: string;
    path: string;
}

/**
 * The part of the Python extension's exported API that gradsight uses. The full typed API is published as the npm
 * package `@vscode/python-extension`, but gradsight declares only these members so the Python extension stays an
 * optional runtime dependency with no build-time one.
 */
export interface PythonExtensionApi {
    environments: {
        getActiveEnvironmentPath(resource?: Uri | WorkspaceFolder): EnvironmentPath;
        resolveEnvironment(
            environment: EnvironmentPath | string,
        ): Promise<{ executable: { uri: Uri | undefined } } | undefined>;
        onDidChangeActiveEnvironmentPath: Event<unknown>;
    };
}

/** The lookup half of `vscode.extensions`. */
export interface ExtensionRegistry {
    getExtension(extensionId: string): Extension<unknown> | undefined;
}

function isPythonExtensionApi(value: unknown): value is PythonExtensionApi {
    const environments = (value as { environments?: Record<string, unknown> } | undefined)?.environments;
    return (
        typeof environments?.getActiveEnvironmentPath === 'function' &&
        typeof environments.resolveEnvironment === 'function' &&
        typeof environments.onDidChangeActiveEnvironmentPath === 'function'
    );
}

/**
 * Activates the Python extension and returns its API, or undefined when the extension is not installed, fails to
 * activate or has no environments API.
 */
export async function loadPythonExtensionApi(
    extensions: ExtensionRegistry,
    logger: Logger,
): Promise<PythonExtensionApi | undefined> {
    const extension = extensions.getExtension(PYTHON_EXTENSION_ID);
    if (extension === undefined) {
        logger.info(`The Python extension (${PYTHON_EXTENSION_ID}) is not installed, so it is not asked for an interpreter.`);
        return undefined;
    }

    let extensionExports: unknown;
    try {
        extensionExports = extension.isActive ? extension.exports : await extension.activate();
    } catch (error) {
        logger.error(`Failed to activate the Python extension (${PYTHON_EXTENSION_ID}): ${describeError(error)}`);
        return undefined;
    }
    if (!isPythonExtensionApi(extensionExports)) {
        logger.warn(`The Python extension (${PYTHON_EXTENSION_ID}) has no environments API, so it is not asked for an interpreter.`);
        return undefined;
    }
    return extensionExports;
}

/** Returns a source for the interpreter that the Python extension selected for one workspace folder or file. */
export function createPythonExtensionInterpreterSource(
    api: PythonExtensionApi,
    resource: Uri | undefined,
): PythonExtensionInterpreterSource {
    return {
        async getActiveInterpreter(): Promise<string[] | undefined> {
            const environmentPath = api.environments.getActiveEnvironmentPath(resource);
            const environment = await api.environments.resolveEnvironment(environmentPath);
            // A conda environment created without Python resolves with no executable.
            const executable = environment?.executable.uri?.fsPath;
            return executable ? [executable] : undefined;
        },
    };
}
