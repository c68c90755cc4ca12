// Unit tests of the feature's wiring: commands, notifications, the pause context key and the end of a session.
// `vscode` is FakeGradientsVscode, the debug session FakeDebugSession and the server FakeServer.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { MESSAGES } from '../src/gradients/check';
import { CHECK_GRADIENTS_COMMAND } from '../src/gradients/codeLens';
import { ANALYZE_SNAPSHOT_REQUEST, END_SESSION_REQUEST, PROBE_REQUEST } from '../src/gradients/protocol';
import {
    CHOOSE_MODEL_COMMAND,
    HAS_RESULT_CONTEXT_KEY,
    PAUSED_CONTEXT_KEY,
    registerGradients,
    SHOW_GRADIENT_FLOW_COMMAND,
} from '../src/gradients/register';
import { LanguageClientTracker, ServerNotRunningError } from '../src/gradients/serverConnection';
import { OPEN_LOCATION_COMMAND } from '../src/gradients/treeView';
import { fileUri, flushPromises, RecordingLogger } from './fakes';
import { FakeDebugSession, FakeGradientsVscode, FakeServer, PROBE_EXPRESSIONS, tinyLrAnalysis } from './gradientFakes';

function setup() {
    const fake = new FakeGradientsVscode();
    const server = new FakeServer();
    server.handlers.set(PROBE_REQUEST, () => PROBE_EXPRESSIONS);
    server.handlers.set(ANALYZE_SNAPSHOT_REQUEST, () => tinyLrAnalysis());
    server.handlers.set(END_SESSION_REQUEST, () => null);
    const logger = new RecordingLogger();
    const context = { subscriptions: [] as { dispose(): unknown }[], extensionUri: fileUri('/ext') as never };
    const feature = registerGradients(fake.api, context, { server, logger });
    return { fake, server, logger, context, feature };
}

/** Starts a paused debugpy session, reported to the feature through its adapter tracker. */
function startPausedSession(fake: FakeGradientsVscode): FakeDebugSession {
    const session = new FakeDebugSession();
    session.evaluate = (expression) => {
        if (expression === 'INSTALL') {
            return { result: '{"probe": {"version": "1+test"}}' };
        }
        if (expression === 'FIND') {
            return { result: '{"models": [{"expression": "model", "type": "Sequential", "parameters": 10}], "optimizers": []}' };
        }
        return { result: '{"parameters": []}' };
    };
    fake.activeDebugSession = session;
    const tracker = fake.trackerFactories.get('debugpy')?.createDebugAdapterTracker(session) as {
        onDidSendMessage(message: unknown): void;
    };
    tracker.onDidSendMessage({ type: 'event', event: 'stopped', body: { threadId: 1 } });
    return session;
}

function contextValues(fake: FakeGradientsVscode, key: string): unknown[] {
    return fake.executedCommands.filter((args) => args[0] === 'setContext' && args[1] === key).map((args) => args[2]);
}

describe('registerGradients', () => {
    it('registers commands and debug trackers', () => {
        const { fake } = setup();
        for (const command of [CHECK_GRADIENTS_COMMAND, CHOOSE_MODEL_COMMAND, SHOW_GRADIENT_FLOW_COMMAND, OPEN_LOCATION_COMMAND]) {
            assert.ok(fake.commands.has(command), command);
        }
        assert.deepEqual([...fake.trackerFactories.keys()].sort(), ['debugpy', 'python']);
        assert.equal(fake.treeViews[0].id, 'gradsight.gradients');
    });

    it('shows an error without a debug session', async () => {
        const { fake } = setup();
        await fake.commands.get(CHECK_GRADIENTS_COMMAND)?.();
        await fake.errorShown.promise;
        assert.deepEqual(fake.errorMessages, [{ message: MESSAGES.noSession, items: [] }]);
    });

    it('runs an error action', async () => {
        const { fake, server } = setup();
        startPausedSession(fake);
        server.running = false;
        fake.errorChoice = 'Restart Server';
        await fake.commands.get(CHECK_GRADIENTS_COMMAND)?.();
        await flushPromises();
        assert.deepEqual(fake.errorMessages[0].items, ['Restart Server', 'Show Logs']);
        assert.deepEqual(fake.executedCommands.at(-1), ['gradsight.restart']);
    });

    it('shows a check in the view and the diagnostics', async () => {
        const { fake, feature } = setup();
        startPausedSession(fake);
        const result = await feature.runCheck();
        assert.equal(result?.analysis.layers.length, 2);
        assert.equal(feature.tree.current, result);
        assert.equal(fake.diagnosticCollections[0].entries.size, 1);
        assert.deepEqual(contextValues(fake, HAS_RESULT_CONTEXT_KEY), [true]);
        assert.deepEqual(fake.treeViews[0].revealed, [feature.tree.modelNode]);
        assert.deepEqual(fake.errorMessages, []);
    });

    it('sets the paused context key', () => {
        const { fake } = setup();
        assert.deepEqual(contextValues(fake, PAUSED_CONTEXT_KEY), [false]);
        startPausedSession(fake);
        assert.deepEqual(contextValues(fake, PAUSED_CONTEXT_KEY), [false, true]);
    });

    it('cleans up when the session ends', async () => {
        const { fake, feature, server } = setup();
        const session = startPausedSession(fake);
        await feature.runCheck();
        fake.sessionTerminated.fire({ id: session.id });
        await flushPromises();
        assert.equal(fake.diagnosticCollections[0].entries.size, 0);
        assert.equal(feature.tree.current?.sessionEnded, true);
        assert.equal(feature.pauseTracker.isPaused(session.id), undefined);
        assert.deepEqual(server.requests.at(-1), { method: END_SESSION_REQUEST, params: { sessionId: session.id } });
    });

    it('opens a layer location', async () => {
        const { fake } = setup();
        const location = { uri: 'file:///home/ada/project/train.py', range: { start: { line: 8, character: 4 }, end: { line: 8, character: 30 } } };
        await fake.commands.get(OPEN_LOCATION_COMMAND)?.(location);
        assert.equal(fake.openedDocuments.length, 1);
        assert.equal(fake.openedDocuments[0].uri, location.uri);
        const options = fake.openedDocuments[0].options as { selection: { start: { line: number; character: number } } };
        assert.deepEqual({ ...options.selection.start }, { line: 8, character: 4 });
    });

    it('ignores an invalid location', async () => {
        const { fake } = setup();
        await fake.commands.get(OPEN_LOCATION_COMMAND)?.({ uri: 42 });
        assert.equal(fake.openedDocuments.length, 0);
    });
});

describe('LanguageClientTracker', () => {
    it('rejects requests without a running client', async () => {
        const clients = new LanguageClientTracker();
        assert.equal(clients.isRunning(), false);
        await assert.rejects(clients.sendRequest('gradsight/probe'), ServerNotRunningError);
    });

    it('sends to the client created last', async () => {
        const clients = new LanguageClientTracker();
        const sent: string[] = [];
        const client = (name: string, running: boolean) => ({
            isRunning: () => running,
            sendRequest: async <R>(method: string) => {
                sent.push(`${name} ${method}`);
                return null as R;
            },
        });
        clients.track(client('old', true));
        clients.track(client('new', true));
        await clients.sendRequest('gradsight/probe');
        assert.deepEqual(sent, ['new gradsight/probe']);
        clients.track(client('stopped', false));
        await assert.rejects(clients.sendRequest('gradsight/probe'), ServerNotRunningError);
    });
});
