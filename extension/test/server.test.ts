import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { buildServerLaunch, ServerClient, ServerLaunch, ServerManager } from '../src/server';
import { FakeClient, FakeClientFactory, flushPromises, RecordingLogger, StartBehavior } from './fakes';

describe('buildServerLaunch', () => {
    it('runs gradsight lsp as a module', () => {
        const launch = buildServerLaunch({
            interpreter: ['/usr/bin/python3'],
            bundledLibsDir: '/ext/bundled/libs',
            baseEnv: {},
            cwd: '/home/ada/project',
            platform: 'linux',
        });
        assert.equal(launch.command, '/usr/bin/python3');
        assert.deepEqual(launch.args, ['-m', 'gradsight', 'lsp']);
        assert.equal(launch.cwd, '/home/ada/project');
    });

    it('keeps interpreter arguments before -m', () => {
        const launch = buildServerLaunch({
            interpreter: ['/usr/bin/python3', '-X', 'utf8'],
            bundledLibsDir: '/ext/bundled/libs',
            baseEnv: {},
            platform: 'linux',
        });
        assert.deepEqual(launch.args, ['-X', 'utf8', '-m', 'gradsight', 'lsp']);
    });

    it('sets PYTHONPATH and PYTHONNOUSERSITE', () => {
        const launch = buildServerLaunch({
            interpreter: ['python3'],
            bundledLibsDir: '/ext/bundled/libs',
            baseEnv: { PATH: '/usr/bin', HOME: '/home/ada', UNSET: undefined },
            platform: 'linux',
        });
        assert.equal(launch.env.PYTHONPATH, '/ext/bundled/libs');
        assert.equal(launch.env.PYTHONNOUSERSITE, '1');
        assert.equal(launch.env.PATH, '/usr/bin');
        assert.equal(launch.env.HOME, '/home/ada');
        assert.equal('UNSET' in launch.env, false);
    });

    it('prepends to existing PYTHONPATH', () => {
        const baseEnv = { PYTHONPATH: '/home/ada/src' };
        const launch = buildServerLaunch({
            interpreter: ['python3'],
            bundledLibsDir: '/ext/bundled/libs',
            baseEnv,
            platform: 'linux',
        });
        assert.equal(launch.env.PYTHONPATH, '/ext/bundled/libs:/home/ada/src');
        assert.deepEqual(baseEnv, { PYTHONPATH: '/home/ada/src' });
    });

    it('uses Windows separator and key case', () => {
        const launch = buildServerLaunch({
            interpreter: ['C:\\Python312\\python.exe'],
            bundledLibsDir: 'C:\\ext\\bundled\\libs',
            baseEnv: { PythonPath: 'C:\\src' },
            platform: 'win32',
        });
        assert.equal(launch.env.PYTHONPATH, 'C:\\ext\\bundled\\libs;C:\\src');
        assert.equal('PythonPath' in launch.env, false);
    });

    it('keeps differently cased key on Linux', () => {
        const launch = buildServerLaunch({
            interpreter: ['python3'],
            bundledLibsDir: '/ext/bundled/libs',
            baseEnv: { PythonPath: '/not/for/python' },
            platform: 'linux',
        });
        assert.equal(launch.env.PYTHONPATH, '/ext/bundled/libs');
        assert.equal(launch.env.PythonPath, '/not/for/python');
    });
});

function launchNumber(n: number): ServerLaunch {
    return { command: `python-${n}`, args: ['-m', 'gradsight', 'lsp'], env: {} };
}

/** ServerManager wired to FakeClients, with launches numbered in the order they are resolved. */
function createManager(behaviors: StartBehavior[] = ['succeed']) {
    const factory = new FakeClientFactory(behaviors);
    const logger = new RecordingLogger();
    let resolved = 0;
    const manager = new ServerManager({
        resolveLaunch: async () => launchNumber(++resolved),
        createClient: factory.create,
        logger,
    });
    return { manager, factory, logger };
}

describe('ServerManager', () => {
    it('restart starts a client', async () => {
        const { manager, factory, logger } = createManager();
        assert.equal(manager.state, 'stopped');
        await manager.restart('test');
        assert.equal(manager.state, 'running');
        assert.equal(factory.clients.length, 1);
        assert.equal(factory.clients[0].launch.command, 'python-1');
        assert.deepEqual(factory.events, ['start 1']);
        assert.equal(logger.matching('info', 'Starting the server (test): python-1 -m gradsight lsp').length, 1);
    });

    it('restart stops the old client first', async () => {
        const { manager, factory } = createManager();
        await manager.restart('first');
        await manager.restart('second');
        assert.deepEqual(factory.events, ['start 1', 'dispose 1', 'start 2']);
        assert.equal(factory.clients[1].launch.command, 'python-2');
        assert.equal(manager.state, 'running');
    });

    it('restart while starting waits for start', async () => {
        const { manager, factory } = createManager(['manual', 'succeed']);
        const first = manager.restart('first');
        await flushPromises();
        assert.equal(manager.state, 'starting');

        const second = manager.restart('second');
        await flushPromises();
        assert.deepEqual(factory.events, ['start 1']);
        assert.equal(factory.clients.length, 1);

        factory.clients[0].startGate.resolve();
        await first;
        await second;
        assert.deepEqual(factory.events, ['start 1', 'dispose 1', 'start 2']);
        assert.equal(manager.state, 'running');
    });

    it('restarts queued during a start share one', async () => {
        const { manager, factory, logger } = createManager(['manual', 'succeed']);
        const first = manager.restart('first');
        await flushPromises();

        const second = manager.restart('second');
        const third = manager.restart('third');
        const fourth = manager.restart('fourth');
        assert.equal(third, second);
        assert.equal(fourth, second);
        assert.equal(logger.matching('info', 'so it joins that one').length, 2);

        factory.clients[0].startGate.resolve();
        await Promise.all([first, second, third, fourth]);
        assert.equal(factory.clients.length, 2);
        assert.deepEqual(factory.events, ['start 1', 'dispose 1', 'start 2']);
    });

    it('restart after queued restart began runs again', async () => {
        const { manager, factory } = createManager(['manual', 'manual', 'succeed']);
        const first = manager.restart('first');
        await flushPromises();
        const second = manager.restart('second');
        factory.clients[0].startGate.resolve();
        await flushPromises();
        assert.equal(factory.clients.length, 2);

        const third = manager.restart('third');
        assert.notEqual(third, second);
        factory.clients[1].startGate.resolve();
        await Promise.all([first, second, third]);
        assert.deepEqual(factory.events, ['start 1', 'dispose 1', 'start 2', 'dispose 2', 'start 3']);
    });

    it('start failure leaves server stopped', async () => {
        const { manager, factory, logger } = createManager(['fail', 'succeed']);
        await manager.restart('first');
        assert.equal(manager.state, 'stopped');
        assert.equal(logger.matching('error', 'The server failed to start: server 1 exited with code 1').length, 1);
        assert.equal(factory.clients[0].disposeCalls, 1);

        await manager.restart('retry');
        assert.equal(manager.state, 'running');
        assert.deepEqual(factory.events, ['start 1', 'dispose 1', 'start 2']);
    });

    it('failed start during restart is not stopped again', async () => {
        const { manager, factory } = createManager(['manual', 'succeed']);
        const first = manager.restart('first');
        await flushPromises();
        const second = manager.restart('second');
        factory.clients[0].startGate.reject(new Error('initialize failed'));
        await Promise.all([first, second]);
        assert.equal(factory.clients[0].disposeCalls, 1);
        assert.deepEqual(factory.events, ['start 1', 'dispose 1', 'start 2']);
        assert.equal(manager.state, 'running');
    });

    it('stop while starting waits for start', async () => {
        const { manager, factory } = createManager(['manual']);
        const start = manager.restart('first');
        await flushPromises();
        const stop = manager.stop();
        await flushPromises();
        assert.deepEqual(factory.events, ['start 1']);

        factory.clients[0].startGate.resolve();
        await Promise.all([start, stop]);
        assert.deepEqual(factory.events, ['start 1', 'dispose 1']);
        assert.equal(manager.state, 'stopped');
    });

    it('stop without a server does nothing', async () => {
        const { manager, factory } = createManager();
        await manager.stop();
        assert.equal(manager.state, 'stopped');
        assert.deepEqual(factory.events, []);
    });

    it('dispose skips queued restart', async () => {
        const { manager, factory } = createManager(['manual', 'succeed']);
        const first = manager.restart('first');
        await flushPromises();
        const queued = manager.restart('queued');
        const disposed = manager.dispose();

        factory.clients[0].startGate.resolve();
        await Promise.all([first, queued, disposed]);
        assert.deepEqual(factory.events, ['start 1', 'dispose 1']);
        assert.equal(manager.state, 'stopped');

        await manager.restart('after dispose');
        assert.equal(factory.clients.length, 1);
    });

    it('dispose during interpreter check starts nothing', async () => {
        const factory = new FakeClientFactory();
        let releaseLaunch: () => void = () => undefined;
        const manager = new ServerManager({
            resolveLaunch: () =>
                new Promise((resolve) => {
                    releaseLaunch = () => resolve(launchNumber(1));
                }),
            createClient: factory.create,
            logger: new RecordingLogger(),
        });
        const start = manager.restart('first');
        await flushPromises();
        const disposed = manager.dispose();
        releaseLaunch();
        await Promise.all([start, disposed]);
        assert.equal(factory.clients.length, 0);
        assert.equal(manager.state, 'stopped');
    });

    it('no interpreter means no client', async () => {
        const factory = new FakeClientFactory();
        const manager = new ServerManager({
            resolveLaunch: async () => undefined,
            createClient: factory.create,
            logger: new RecordingLogger(),
        });
        await manager.restart('test');
        assert.equal(factory.clients.length, 0);
        assert.equal(manager.state, 'stopped');
    });

    it('launch error is logged and recoverable', async () => {
        const factory = new FakeClientFactory();
        const logger = new RecordingLogger();
        let calls = 0;
        const manager = new ServerManager({
            resolveLaunch: async () => {
                calls++;
                if (calls === 1) {
                    throw new Error('configuration unreadable');
                }
                return launchNumber(calls);
            },
            createClient: factory.create,
            logger,
        });
        await manager.restart('first');
        assert.equal(manager.state, 'stopped');
        assert.equal(logger.matching('error', 'configuration unreadable').length, 1);

        await manager.restart('second');
        assert.equal(manager.state, 'running');
        assert.equal(factory.clients[0].launch.command, 'python-2');
    });

    it('client construction error is logged', async () => {
        const logger = new RecordingLogger();
        const manager = new ServerManager({
            resolveLaunch: async () => launchNumber(1),
            createClient: (): ServerClient => {
                throw new Error('invalid server options');
            },
            logger,
        });
        await manager.restart('test');
        assert.equal(manager.state, 'stopped');
        assert.equal(logger.matching('error', 'invalid server options').length, 1);
    });

    it('stop failure is logged and restart continues', async () => {
        const events: string[] = [];
        const logger = new RecordingLogger();
        const clients: FakeClient[] = [];
        let count = 0;
        const manager = new ServerManager({
            resolveLaunch: async () => launchNumber(++count),
            createClient: (launch) => {
                const stopError = clients.length === 0 ? new Error('Stopping the server timed out') : undefined;
                const client = new FakeClient(clients.length + 1, launch, events, 'succeed', stopError);
                clients.push(client);
                return client;
            },
            logger,
        });
        await manager.restart('first');
        await manager.restart('second');
        assert.equal(logger.matching('error', 'Stopping the server timed out').length, 1);
        assert.deepEqual(events, ['start 1', 'dispose 1', 'start 2']);
        assert.equal(manager.state, 'running');
    });
});
