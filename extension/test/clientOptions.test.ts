import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { buildServerOptions, DOCUMENT_SELECTOR } from '../src/clientOptions';
import { buildServerLaunch } from '../src/server';

describe('buildServerOptions', () => {
    const launch = buildServerLaunch({
        interpreter: ['/usr/bin/python3'],
        bundledLibsDir: '/ext/bundled/libs',
        baseEnv: { PATH: '/usr/bin' },
        cwd: '/home/ada/project',
        platform: 'linux',
    });
    const options = buildServerOptions(launch);

    it('passes the launch through', () => {
        assert.equal(options.command, '/usr/bin/python3');
        assert.deepEqual(options.args, ['-m', 'gradsight', 'lsp']);
        assert.equal(options.options?.cwd, '/home/ada/project');
        assert.equal(options.options?.env.PYTHONPATH, '/ext/bundled/libs');
        assert.equal(options.options?.env.PYTHONNOUSERSITE, '1');
    });

    it('leaves transport unset', () => {
        // vscode-languageclient appends --stdio when transport is TransportKind.stdio.
        assert.equal(options.transport, undefined);
    });
});

describe('DOCUMENT_SELECTOR', () => {
    it('selects Python files and untitled editors', () => {
        assert.deepEqual(DOCUMENT_SELECTOR, [
            { scheme: 'file', language: 'python' },
            { scheme: 'untitled', language: 'python' },
        ]);
    });
});
