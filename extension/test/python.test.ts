import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
    checkInterpreter,
    collectInterpreterCandidates,
    defaultInterpreter,
    formatNoInterpreterMessage,
    InterpreterCandidate,
    InterpreterCheck,
    isSupportedVersion,
    parseVersionOutput,
    PythonExtensionInterpreterSource,
    selectInterpreter,
} from '../src/python';
import { RecordingLogger } from './fakes';

function extensionReturning(command: string[] | undefined): PythonExtensionInterpreterSource {
    return { getActiveInterpreter: async () => command };
}

describe('collectInterpreterCandidates', () => {
    it('orders extension, setting, default', async () => {
        const candidates = await collectInterpreterCandidates({
            pythonExtension: extensionReturning(['/envs/torch/bin/python']),
            settingInterpreter: ['/opt/python3.12/bin/python3'],
            platform: 'linux',
            logger: new RecordingLogger(),
        });
        assert.deepEqual(candidates, [
            { command: ['/envs/torch/bin/python'], source: 'python-extension' },
            { command: ['/opt/python3.12/bin/python3'], source: 'setting' },
            { command: ['python3'], source: 'default' },
        ]);
    });

    it('uses setting without Python extension', async () => {
        const candidates = await collectInterpreterCandidates({
            pythonExtension: undefined,
            settingInterpreter: ['/opt/python3.12/bin/python3', '-X', 'utf8'],
            platform: 'linux',
            logger: new RecordingLogger(),
        });
        assert.deepEqual(candidates, [
            { command: ['/opt/python3.12/bin/python3', '-X', 'utf8'], source: 'setting' },
            { command: ['python3'], source: 'default' },
        ]);
    });

    it('falls back to default only', async () => {
        const candidates = await collectInterpreterCandidates({
            pythonExtension: undefined,
            settingInterpreter: [],
            platform: 'darwin',
            logger: new RecordingLogger(),
        });
        assert.deepEqual(candidates, [{ command: ['python3'], source: 'default' }]);
    });

    it('uses python as Windows default', async () => {
        assert.deepEqual(defaultInterpreter('win32'), ['python']);
        const candidates = await collectInterpreterCandidates({
            pythonExtension: undefined,
            settingInterpreter: [],
            platform: 'win32',
            logger: new RecordingLogger(),
        });
        assert.deepEqual(candidates, [{ command: ['python'], source: 'default' }]);
    });

    it('skips extension without interpreter', async () => {
        const logger = new RecordingLogger();
        const candidates = await collectInterpreterCandidates({
            pythonExtension: extensionReturning(undefined),
            settingInterpreter: [],
            platform: 'linux',
            logger,
        });
        assert.deepEqual(candidates, [{ command: ['python3'], source: 'default' }]);
        assert.equal(logger.matching('warn', 'has no Python executable').length, 1);
    });

    it('logs extension failure and continues', async () => {
        const logger = new RecordingLogger();
        const candidates = await collectInterpreterCandidates({
            pythonExtension: {
                getActiveInterpreter: () => Promise.reject(new Error('environment discovery crashed')),
            },
            settingInterpreter: ['/usr/bin/python3.11'],
            platform: 'linux',
            logger,
        });
        assert.deepEqual(
            candidates.map((candidate) => candidate.source),
            ['setting', 'default'],
        );
        assert.equal(logger.matching('error', 'environment discovery crashed').length, 1);
    });

    it('lists identical commands once', async () => {
        const candidates = await collectInterpreterCandidates({
            pythonExtension: extensionReturning(['python3']),
            settingInterpreter: ['python3'],
            platform: 'linux',
            logger: new RecordingLogger(),
        });
        assert.deepEqual(candidates, [{ command: ['python3'], source: 'python-extension' }]);
    });
});

describe('parseVersionOutput', () => {
    it('parses a version line', () => {
        assert.deepEqual(parseVersionOutput('3.11.7\n'), { major: 3, minor: 11, micro: 7 });
    });

    it('uses the last line', () => {
        assert.deepEqual(parseVersionOutput('activating conda env\r\n3.10.13\r\n'), { major: 3, minor: 10, micro: 13 });
    });

    it('rejects other output', () => {
        assert.equal(parseVersionOutput('Python 3.11.7'), undefined);
        assert.equal(parseVersionOutput(''), undefined);
    });
});

describe('isSupportedVersion', () => {
    const cases: [string, boolean][] = [
        ['2.7.18', false],
        ['3.8.18', false],
        ['3.9.18', false],
        ['3.10.0', true],
        ['3.11.7', true],
        ['3.13.0', true],
        ['4.0.0', true],
    ];
    for (const [text, expected] of cases) {
        it(`${text} is ${expected ? 'supported' : 'too old'}`, () => {
            const version = parseVersionOutput(text);
            assert.ok(version);
            assert.equal(isSupportedVersion(version), expected);
        });
    }
});

describe('checkInterpreter', { skip: process.platform === 'win32' ? 'fake interpreters are shell scripts' : false }, () => {
    let directory: string;
    const argsFile = (): string => path.join(directory, 'args.txt');

    function writeScript(name: string, body: string, mode = 0o755): string {
        const file = path.join(directory, name);
        fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode });
        return file;
    }

    before(() => {
        directory = fs.mkdtempSync(path.join(os.tmpdir(), 'gradsight-interpreters-'));
    });

    after(() => {
        fs.rmSync(directory, { recursive: true, force: true });
    });

    it('accepts Python 3.12', async () => {
        const python = writeScript('python312', 'echo 3.12.1');
        const check = await checkInterpreter({ command: [python], source: 'setting' });
        assert.deepEqual(check.version, { major: 3, minor: 12, micro: 1 });
        assert.equal(check.problem, undefined);
    });

    it('rejects Python 3.8 with its version', async () => {
        const python = writeScript('python38', 'echo 3.8.10');
        const check = await checkInterpreter({ command: [python], source: 'setting' });
        assert.deepEqual(check.version, { major: 3, minor: 8, micro: 10 });
        assert.equal(check.problem, 'it is Python 3.8.10, older than the required 3.10');
    });

    it('passes extra arguments before -c', async () => {
        const python = writeScript('python-args', `printf '%s\\n' "$@" > '${argsFile()}'\necho 3.11.0`);
        const check = await checkInterpreter({ command: [python, '-X', 'utf8'], source: 'setting' });
        assert.equal(check.problem, undefined);
        const args = fs.readFileSync(argsFile(), 'utf8').split('\n');
        assert.deepEqual(args.slice(0, 3), ['-X', 'utf8', '-c']);
        assert.match(args[3], /sys\.version_info/);
    });

    it('reports a missing executable', async () => {
        const check = await checkInterpreter({ command: [path.join(directory, 'no-such-python')], source: 'setting' });
        assert.equal(check.version, undefined);
        assert.equal(check.problem, 'the executable was not found');
    });

    it('reports a file that cannot run', async () => {
        const python = writeScript('not-executable', 'echo 3.11.0', 0o644);
        const check = await checkInterpreter({ command: [python], source: 'setting' });
        assert.match(check.problem ?? '', /^the executable could not be started \(.*EACCES/);
    });

    it('reports exit code and stderr', async () => {
        const python = writeScript('python-crash', 'echo "Fatal Python error: init_fs_encoding" >&2\nexit 3');
        const check = await checkInterpreter({ command: [python], source: 'setting' });
        assert.equal(check.problem, 'it exited with code 3: Fatal Python error: init_fs_encoding');
    });

    it('reports output without a version', async () => {
        const python = writeScript('python-chatty', 'echo hello');
        const check = await checkInterpreter({ command: [python], source: 'setting' });
        assert.equal(check.problem, 'it printed no version number (output: "hello")');
    });

    it('reports a timeout', async () => {
        const python = writeScript('python-hangs', 'exec sleep 10');
        const check = await checkInterpreter({ command: [python], source: 'setting' }, undefined, 300);
        assert.equal(check.problem, 'it did not print its version within 0.3 s');
    });

    it('reads the version of real python3', async () => {
        const check = await checkInterpreter({ command: ['python3'], source: 'default' });
        assert.ok(check.version, `python3 version check failed: ${check.problem}`);
        assert.equal(check.problem === undefined, isSupportedVersion(check.version));
    });
});

describe('selectInterpreter', () => {
    const candidates: InterpreterCandidate[] = [
        { command: ['/envs/old/bin/python'], source: 'python-extension' },
        { command: ['/opt/py311/bin/python3'], source: 'setting' },
        { command: ['python3'], source: 'default' },
    ];

    function checkFromTable(table: Record<string, Omit<InterpreterCheck, 'candidate'>>, checked: string[]) {
        return async (candidate: InterpreterCandidate): Promise<InterpreterCheck> => {
            checked.push(candidate.command[0]);
            return { candidate, ...table[candidate.command[0]] };
        };
    }

    it('selects first usable candidate', async () => {
        const checked: string[] = [];
        const logger = new RecordingLogger();
        const selection = await selectInterpreter(
            candidates,
            logger,
            checkFromTable(
                {
                    '/envs/old/bin/python': { version: { major: 3, minor: 8, micro: 10 }, problem: 'it is Python 3.8.10, older than the required 3.10' },
                    '/opt/py311/bin/python3': { version: { major: 3, minor: 11, micro: 4 } },
                    python3: { version: { major: 3, minor: 12, micro: 0 } },
                },
                checked,
            ),
        );
        assert.equal(selection.selected?.candidate.source, 'setting');
        assert.deepEqual(checked, ['/envs/old/bin/python', '/opt/py311/bin/python3']);
        assert.equal(logger.matching('warn', '/envs/old/bin/python').length, 1);
        assert.equal(logger.matching('info', 'Using Python 3.11.4: /opt/py311/bin/python3 (from the gradsight.interpreter setting)').length, 1);
    });

    it('returns every check when none is usable', async () => {
        const checked: string[] = [];
        const selection = await selectInterpreter(
            candidates,
            new RecordingLogger(),
            checkFromTable(
                {
                    '/envs/old/bin/python': { problem: 'it is Python 3.8.10, older than the required 3.10' },
                    '/opt/py311/bin/python3': { problem: 'the executable was not found' },
                    python3: { problem: 'it exited with code 9009' },
                },
                checked,
            ),
        );
        assert.equal(selection.selected, undefined);
        assert.equal(selection.checks.length, 3);
        assert.deepEqual(checked, ['/envs/old/bin/python', '/opt/py311/bin/python3', 'python3']);
    });
});

describe('formatNoInterpreterMessage', () => {
    const message = formatNoInterpreterMessage([
        {
            candidate: { command: ['/envs/old/bin/python'], source: 'python-extension' },
            version: { major: 3, minor: 8, micro: 10 },
            problem: 'it is Python 3.8.10, older than the required 3.10',
        },
        { candidate: { command: ['/my python/bin/python'], source: 'setting' }, problem: 'the executable was not found' },
        { candidate: { command: ['python3'], source: 'default' }, problem: 'the executable was not found' },
    ]);

    it('names each interpreter tried', () => {
        assert.match(message, /\/envs\/old\/bin\/python \(the Python extension's selected environment\): it is Python 3\.8\.10/);
        assert.match(message, /"\/my python\/bin\/python" \(the gradsight\.interpreter setting\): the executable was not found/);
        assert.match(message, /python3 \(the default interpreter on PATH\): the executable was not found/);
    });

    it('states the requirement and the fix', () => {
        assert.match(message, /needs Python 3\.10 or newer/);
        assert.match(message, /Set "gradsight\.interpreter" to a Python 3\.10\+ executable, or install Python 3\.10\+/);
    });
});
