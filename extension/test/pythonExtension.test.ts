import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Uri } from 'vscode';

import {
    createPythonExtensionInterpreterSource,
    ExtensionRegistry,
    loadPythonExtensionApi,
    PYTHON_EXTENSION_ID,
} from '../src/pythonExtension';
import { FakePythonExtension, fileUri, RecordingLogger } from './fakes';

function registryWith(extension: { isActive: boolean; exports: unknown; activate(): Promise<unknown> } | undefined): ExtensionRegistry {
    return {
        getExtension: (extensionId: string) =>
            extensionId === PYTHON_EXTENSION_ID ? (extension as ReturnType<ExtensionRegistry['getExtension']>) : undefined,
    };
}

describe('loadPythonExtensionApi', () => {
    it('returns undefined when not installed', async () => {
        const logger = new RecordingLogger();
        assert.equal(await loadPythonExtensionApi(registryWith(undefined), logger), undefined);
        assert.equal(logger.matching('info', 'is not installed').length, 1);
    });

    it('activates an inactive extension', async () => {
        const python = new FakePythonExtension({});
        let activations = 0;
        const api = await loadPythonExtensionApi(
            registryWith({
                isActive: false,
                exports: undefined,
                activate: async () => {
                    activations++;
                    return python.api;
                },
            }),
            new RecordingLogger(),
        );
        assert.ok(api);
        assert.equal(activations, 1);
    });

    it('uses exports of an active extension', async () => {
        const python = new FakePythonExtension({});
        const api = await loadPythonExtensionApi(
            registryWith({
                isActive: true,
                exports: python.api,
                activate: () => Promise.reject(new Error('activate() must not be called')),
            }),
            new RecordingLogger(),
        );
        assert.ok(api);
    });

    it('logs activation failure', async () => {
        const logger = new RecordingLogger();
        const api = await loadPythonExtensionApi(
            registryWith({ isActive: false, exports: undefined, activate: () => Promise.reject(new Error('activation crashed')) }),
            logger,
        );
        assert.equal(api, undefined);
        assert.equal(logger.matching('error', 'activation crashed').length, 1);
    });

    it('ignores exports without environments API', async () => {
        const logger = new RecordingLogger();
        const api = await loadPythonExtensionApi(
            registryWith({ isActive: true, exports: { ready: Promise.resolve() }, activate: async () => undefined }),
            logger,
        );
        assert.equal(api, undefined);
        assert.equal(logger.matching('warn', 'has no environments API').length, 1);
    });
});

describe('createPythonExtensionInterpreterSource', () => {
    it('returns executable for the resource', async () => {
        const python = new FakePythonExtension({ '/home/ada/project': '/home/ada/project/.venv/bin/python' });
        const folder = fileUri('/home/ada/project');
        const source = createPythonExtensionInterpreterSource(python.api, folder as unknown as Uri);
        assert.deepEqual(await source.getActiveInterpreter(), ['/home/ada/project/.venv/bin/python']);
        assert.deepEqual(python.requestedResources, [folder]);
    });

    it('returns undefined without executable', async () => {
        const python = new FakePythonExtension({ '/home/ada/project': undefined });
        const source = createPythonExtensionInterpreterSource(python.api, fileUri('/home/ada/project') as unknown as Uri);
        assert.equal(await source.getActiveInterpreter(), undefined);
    });
});
