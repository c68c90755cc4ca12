import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, it } from 'node:test';

import {
    activateExtension,
    HostEnvironment,
    OPEN_SETTING_ACTION,
    RESTART_COMMAND,
    SHOW_LOGS_ACTION,
    SHOW_LOGS_COMMAND,
} from '../src/activation';
import { InterpreterCandidate, InterpreterCheck, PythonVersion } from '../src/python';
import { FakeClientFactory, FakePythonExtension, FakeVscode, fakeContext, flushPromises, workspaceFolder } from './fakes';

const EXTENSION_PATH = '/ext/gradsight-0.1.0';
const BUNDLED_LIBS = path.join(EXTENSION_PATH, 'bundled', 'libs');

/**
 * Builds a host whose interpreters come from a table of executable to version. Executables not in the table are
 * reported as not found.
 */
function hostWith(versions: Record<string, PythonVersion>, checked: string[] = []): HostEnvironment {
    return {
        platform: 'linux',
        env: { PATH: '/usr/bin', PYTHONPATH: '/home/ada/lib' },
        userHome: '/home/ada',
        checkInterpreter: async (candidate: InterpreterCandidate): Promise<InterpreterCheck> => {
            checked.push(candidate.command[0]);
            const version = versions[candidate.command[0]];
            if (version === undefined) {
                return { candidate, problem: 'the executable was not found' };
            }
            if (version.minor < 10) {
                return { candidate, version, problem: `it is Python 3.${version.minor}.${version.micro}, older than the required 3.10` };
            }
            return { candidate, version };
        },
    };
}

const PY38: PythonVersion = { major: 3, minor: 8, micro: 18 };
const PY311: PythonVersion = { major: 3, minor: 11, micro: 7 };

describe('activateExtension', () => {
    it('creates the gradsight output channel', async () => {
        const fake = new FakeVscode();
        const context = fakeContext(EXTENSION_PATH);
        const activated = await activateExtension(fake.api, context, new FakeClientFactory().create, hostWith({ python3: PY311 }));
        await activated.initialStart;
        assert.equal(fake.outputChannels.length, 1);
        assert.equal(fake.outputChannel.name, 'gradsight');
        assert.ok(context.subscriptions.includes(fake.outputChannel as never));
    });

    it('starts the server with the setting interpreter', async () => {
        const fake = new FakeVscode();
        fake.workspaceFolders = [workspaceFolder('/home/ada/project', 0)];
        fake.settings['gradsight.interpreter'] = ['${workspaceFolder}/.venv/bin/python'];
        const factory = new FakeClientFactory();
        const activated = await activateExtension(
            fake.api,
            fakeContext(EXTENSION_PATH),
            factory.create,
            hostWith({ '/home/ada/project/.venv/bin/python': PY311, python3: PY311 }),
        );
        await activated.initialStart;

        assert.equal(factory.clients.length, 1);
        const launch = factory.clients[0].launch;
        assert.equal(launch.command, '/home/ada/project/.venv/bin/python');
        assert.deepEqual(launch.args, ['-m', 'gradsight', 'lsp']);
        assert.equal(launch.cwd, '/home/ada/project');
        assert.equal(launch.env.PYTHONPATH, `${BUNDLED_LIBS}:/home/ada/lib`);
        assert.equal(launch.env.PYTHONNOUSERSITE, '1');
        assert.equal(activated.manager.state, 'running');
        assert.equal(fake.configurationScopes[0], fake.workspaceFolders[0].uri);
    });

    it('uses python3 without setting or Python extension', async () => {
        const fake = new FakeVscode();
        const factory = new FakeClientFactory();
        const activated = await activateExtension(fake.api, fakeContext(EXTENSION_PATH), factory.create, hostWith({ python3: PY311 }));
        await activated.initialStart;
        assert.equal(factory.clients[0].launch.command, 'python3');
        assert.equal(factory.clients[0].launch.cwd, undefined);
    });

    it('warns when bundled libraries are missing', async () => {
        const fake = new FakeVscode();
        const activated = await activateExtension(fake.api, fakeContext(EXTENSION_PATH), new FakeClientFactory().create, hostWith({ python3: PY311 }));
        await activated.initialStart;
        assert.equal(fake.outputChannel.matching('warn', `Bundled server libraries not found at ${BUNDLED_LIBS}`).length, 1);
    });

    it('prefers the Python extension interpreter', async () => {
        const fake = new FakeVscode();
        fake.workspaceFolders = [workspaceFolder('/home/ada/web', 0), workspaceFolder('/home/ada/training', 1)];
        fake.activeDocument = { uri: workspaceFolder('/home/ada/training/train.py', 0).uri, languageId: 'python' };
        fake.settings['gradsight.interpreter'] = ['/usr/bin/python3.12'];
        const python = new FakePythonExtension({
            '/home/ada/web': '/home/ada/web/.venv/bin/python',
            '/home/ada/training': '/home/ada/envs/torch/bin/python',
        });
        fake.installPythonExtension(python);
        const factory = new FakeClientFactory();
        const checked: string[] = [];
        const activated = await activateExtension(
            fake.api,
            fakeContext(EXTENSION_PATH),
            factory.create,
            hostWith({ '/home/ada/envs/torch/bin/python': PY311, '/usr/bin/python3.12': PY311, python3: PY311 }, checked),
        );
        await activated.initialStart;

        assert.equal(factory.clients[0].launch.command, '/home/ada/envs/torch/bin/python');
        assert.equal(factory.clients[0].launch.cwd, '/home/ada/training');
        assert.deepEqual(checked, ['/home/ada/envs/torch/bin/python']);
        assert.deepEqual(
            python.requestedResources.map((uri) => uri?.fsPath),
            ['/home/ada/training'],
        );
    });

    it('falls back when Python extension env is too old', async () => {
        const fake = new FakeVscode();
        fake.workspaceFolders = [workspaceFolder('/home/ada/project', 0)];
        fake.settings['gradsight.interpreter'] = ['/usr/bin/python3.11'];
        fake.installPythonExtension(new FakePythonExtension({ '/home/ada/project': '/usr/bin/python3.8' }));
        const factory = new FakeClientFactory();
        const activated = await activateExtension(
            fake.api,
            fakeContext(EXTENSION_PATH),
            factory.create,
            hostWith({ '/usr/bin/python3.8': PY38, '/usr/bin/python3.11': PY311 }),
        );
        await activated.initialStart;

        assert.equal(factory.clients[0].launch.command, '/usr/bin/python3.11');
        assert.equal(fake.outputChannel.matching('warn', 'Skipping interpreter /usr/bin/python3.8').length, 1);
        assert.equal(fake.errorMessages.length, 0);
    });

    it('shows an error when no interpreter fits', async () => {
        const fake = new FakeVscode();
        fake.settings['gradsight.interpreter'] = ['/usr/bin/python3.8'];
        fake.errorChoice = OPEN_SETTING_ACTION;
        const factory = new FakeClientFactory();
        const activated = await activateExtension(fake.api, fakeContext(EXTENSION_PATH), factory.create, hostWith({ '/usr/bin/python3.8': PY38 }));
        await activated.initialStart;
        await flushPromises();

        assert.equal(factory.clients.length, 0);
        assert.equal(activated.manager.state, 'stopped');
        assert.equal(fake.errorMessages.length, 1);
        const { message, items } = fake.errorMessages[0];
        assert.match(message, /\/usr\/bin\/python3\.8 \(the gradsight\.interpreter setting\): it is Python 3\.8\.18/);
        assert.match(message, /python3 \(the default interpreter on PATH\): the executable was not found/);
        assert.match(message, /Set "gradsight\.interpreter"/);
        assert.deepEqual(items, [OPEN_SETTING_ACTION, SHOW_LOGS_ACTION]);
        assert.deepEqual(fake.executedCommands, [['workbench.action.openSettings', 'gradsight.interpreter']]);
        assert.equal(fake.outputChannel.matching('error', 'no suitable interpreter was found').length, 1);
    });

    it('error notification can show logs', async () => {
        const fake = new FakeVscode();
        fake.errorChoice = SHOW_LOGS_ACTION;
        const activated = await activateExtension(fake.api, fakeContext(EXTENSION_PATH), new FakeClientFactory().create, hostWith({}));
        await activated.initialStart;
        await flushPromises();
        assert.equal(fake.outputChannel.showCalls, 1);
        assert.deepEqual(fake.executedCommands, []);
    });

    it('registers restart and show logs commands', async () => {
        const fake = new FakeVscode();
        const factory = new FakeClientFactory();
        const activated = await activateExtension(fake.api, fakeContext(EXTENSION_PATH), factory.create, hostWith({ python3: PY311 }));
        await activated.initialStart;

        await fake.commands.get(RESTART_COMMAND)?.();
        assert.deepEqual(factory.events, ['start 1', 'dispose 1', 'start 2']);

        fake.commands.get(SHOW_LOGS_COMMAND)?.();
        assert.equal(fake.outputChannel.showCalls, 1);
    });

    it('restarts when the interpreter setting changes', async () => {
        const fake = new FakeVscode();
        const factory = new FakeClientFactory();
        const activated = await activateExtension(
            fake.api,
            fakeContext(EXTENSION_PATH),
            factory.create,
            hostWith({ python3: PY311, '/opt/py311/bin/python': PY311 }),
        );
        await activated.initialStart;

        fake.fireConfigurationChange(['gradsight.trace.server']);
        fake.fireConfigurationChange(['python.analysis.typeCheckingMode']);
        await flushPromises();
        assert.equal(factory.clients.length, 1);

        fake.settings['gradsight.interpreter'] = ['/opt/py311/bin/python'];
        fake.fireConfigurationChange(['gradsight.interpreter']);
        await flushPromises();
        assert.equal(factory.clients.length, 2);
        assert.equal(factory.clients[1].launch.command, '/opt/py311/bin/python');
        assert.equal(factory.clients[0].disposeCalls, 1);
    });

    it('restarts when the Python environment changes', async () => {
        const fake = new FakeVscode();
        fake.workspaceFolders = [workspaceFolder('/home/ada/project', 0)];
        const python = new FakePythonExtension({ '/home/ada/project': '/home/ada/envs/a/bin/python' });
        fake.installPythonExtension(python);
        const factory = new FakeClientFactory();
        const activated = await activateExtension(
            fake.api,
            fakeContext(EXTENSION_PATH),
            factory.create,
            hostWith({ '/home/ada/envs/a/bin/python': PY311, '/home/ada/envs/b/bin/python': PY311 }),
        );
        await activated.initialStart;
        assert.equal(python.environmentChanged.listenerCount, 1);

        python.interpreterByFolder['/home/ada/project'] = '/home/ada/envs/b/bin/python';
        python.environmentChanged.fire({ id: 'b', path: '/home/ada/envs/b' });
        await flushPromises();
        assert.equal(factory.clients.length, 2);
        assert.equal(factory.clients[1].launch.command, '/home/ada/envs/b/bin/python');
    });

    it('dispose stops the server', async () => {
        const fake = new FakeVscode();
        const factory = new FakeClientFactory();
        const activated = await activateExtension(fake.api, fakeContext(EXTENSION_PATH), factory.create, hostWith({ python3: PY311 }));
        await activated.initialStart;
        await activated.dispose();
        assert.deepEqual(factory.events, ['start 1', 'dispose 1']);
        assert.equal(activated.manager.state, 'stopped');
    });
});
