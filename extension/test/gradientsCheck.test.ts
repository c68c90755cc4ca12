// Unit tests of the Check Gradients command logic: the happy path, every bad input the user can hit, and the model
// choice remembered per session. The debug session (FakeDebugSession), the language server (FakeServer) and the
// `vscode` namespaces (FakeGradientsVscode) are fakes; GradientChecker, the probe evaluation and the pause tracker
// are the real code.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { GradientCheckError, GradientChecker, MESSAGES } from '../src/gradients/check';
import { DebugPauseTracker } from '../src/gradients/debugState';
import { ChoiceMemory, ENTER_EXPRESSION_LABEL } from '../src/gradients/modelChoice';
import { ANALYZE_SNAPSHOT_REQUEST, END_SESSION_REQUEST, PROBE_REQUEST } from '../src/gradients/protocol';
import { fileUri, RecordingLogger } from './fakes';
import { FakeDebugSession, FakeGradientsVscode, FakeServer, PROBE_EXPRESSIONS, tinyLrAnalysis } from './gradientFakes';

const SNAPSHOT = { probe: '1+test', model: { type: 'Sequential' }, parameters: [], layers: [] };

interface Setup {
    fake: FakeGradientsVscode;
    session: FakeDebugSession;
    server: FakeServer;
    tracker: DebugPauseTracker;
    memory: ChoiceMemory;
    logger: RecordingLogger;
    checker: GradientChecker;
    /** Models that findCandidates returns, as (expression, parameter count). */
    models: [string, number][];
}

function snapshotExpression(model: string): string {
    return `SNAPSHOT(lambda: (${model}), lambda: (None))`;
}

/** A paused debugpy session whose frame contains `model`, a server that returns results, and a checker over them. */
function setup(options: { timeoutMs?: number } = {}): Setup {
    const fake = new FakeGradientsVscode();
    const session = new FakeDebugSession();
    fake.activeDebugSession = session;
    fake.textDocuments = [
        { uri: fileUri('/home/ada/project/model.py'), languageId: 'python' },
        { uri: fileUri('/home/ada/project/README.md'), languageId: 'markdown' },
    ];

    const server = new FakeServer();
    server.handlers.set(PROBE_REQUEST, () => PROBE_EXPRESSIONS);
    server.handlers.set(ANALYZE_SNAPSHOT_REQUEST, () => tinyLrAnalysis());
    server.handlers.set(END_SESSION_REQUEST, () => null);

    const tracker = new DebugPauseTracker();
    const adapter = tracker.createTracker(session.id);
    adapter.onDidSendMessage({ type: 'event', event: 'stopped', body: { reason: 'breakpoint', threadId: 1 } });

    const memory = new ChoiceMemory();
    const logger = new RecordingLogger();
    const checker = new GradientChecker({
        api: fake.api,
        server,
        pauseTracker: tracker,
        memory,
        logger,
        timeoutMs: () => options.timeoutMs ?? 1000,
    });

    const state: Setup = { fake, session, server, tracker, memory, logger, checker, models: [['model', 23466]] };
    session.evaluate = (expression) => {
        if (expression === 'INSTALL') {
            return { result: JSON.stringify({ probe: { version: '1+test', python: '3.11.2', torch: '2.13.0' } }) };
        }
        if (expression === 'FIND') {
            const models = state.models.map(([name, parameters]) => ({ expression: name, type: 'Sequential', parameters, tensors: 10, devices: ['cpu'] }));
            return { result: JSON.stringify({ models, optimizers: [{ expression: 'optimizer', type: 'SGD', groups: 1, parameters: 10 }] }) };
        }
        if (expression.startsWith('SNAPSHOT(')) {
            return { result: JSON.stringify(SNAPSHOT) };
        }
        throw new Error(`unexpected expression ${expression}`);
    };
    return state;
}

async function rejectsWith(promise: Promise<unknown>, message: string | RegExp, actions?: string[]): Promise<GradientCheckError> {
    let caught: unknown;
    try {
        await promise;
    } catch (error) {
        caught = error;
    }
    assert.ok(caught instanceof GradientCheckError, `expected a GradientCheckError, got ${String(caught)}`);
    if (typeof message === 'string') {
        assert.equal(caught.message, message);
    } else {
        assert.match(caught.message, message);
    }
    if (actions !== undefined) {
        assert.deepEqual(caught.actions, actions);
    }
    return caught;
}

describe('GradientChecker.check', () => {
    it('runs install, find, snapshot and analyze', async () => {
        const { checker, session, server } = setup();
        const result = await checker.check();

        assert.ok(result !== undefined);
        assert.equal(result.modelExpression, 'model');
        assert.equal(result.sessionId, 'session-1');
        assert.equal(result.analysis.layers[0].status, 'tiny-update');
        assert.deepEqual(session.evaluatedExpressions(), ['INSTALL', 'FIND', snapshotExpression('model')]);
        for (const request of session.requests.filter((entry) => entry.command === 'evaluate')) {
            assert.equal(request.args.frameId, 7);
            assert.equal(request.args.context, 'repl');
            assert.deepEqual(request.args.format, { rawString: true });
        }

        assert.deepEqual(server.requests.map((request) => request.method), [PROBE_REQUEST, ANALYZE_SNAPSHOT_REQUEST]);
        assert.deepEqual(server.requests[1].params, {
            sessionId: 'session-1',
            snapshot: SNAPSHOT,
            sourceUris: ['file:///home/ada/project/train.py', 'file:///home/ada/project/model.py'],
            modelExpression: 'model',
        });
    });

    it('evaluates in the selected stack frame', async () => {
        const { checker, session, fake } = setup();
        fake.activeStackItem = { session: { id: 'session-1' }, threadId: 1, frameId: 8 };
        await checker.check();
        const evaluates = session.requests.filter((request) => request.command === 'evaluate');
        assert.ok(evaluates.every((request) => request.args.frameId === 8));
    });

    it('asks the probe once per session', async () => {
        const { checker, server } = setup();
        await checker.check();
        await checker.check();
        assert.equal(server.requests.filter((request) => request.method === PROBE_REQUEST).length, 1);
    });

    it('installs the probe on every check', async () => {
        const { checker, session } = setup();
        await checker.check();
        await checker.check();
        assert.equal(session.evaluatedExpressions().filter((expression) => expression === 'INSTALL').length, 2);
    });

    it('rejects a missing debug session', async () => {
        const { checker, fake, session } = setup();
        fake.activeDebugSession = undefined;
        await rejectsWith(checker.check(), MESSAGES.noSession);
        assert.deepEqual(session.requests, []);
    });

    it('rejects a non-Python session', async () => {
        const { checker, fake } = setup();
        fake.activeDebugSession = new FakeDebugSession('node-1', 'pwa-node', 'Launch Program');
        await rejectsWith(checker.check(), /"Launch Program" has the debug type "pwa-node".*"debugpy" or "python"/);
    });

    it('accepts the older python debug type', async () => {
        const { checker, fake, tracker } = setup();
        const legacy = new FakeDebugSession('legacy-1', 'python', 'Python: Current File');
        legacy.evaluate = fake.activeDebugSession!.evaluate;
        fake.activeDebugSession = legacy;
        tracker.createTracker('legacy-1').onDidSendMessage({ type: 'event', event: 'stopped', body: { threadId: 1 } });
        assert.ok((await checker.check()) !== undefined);
    });

    it('rejects a running debuggee', async () => {
        const { checker, tracker, session } = setup();
        tracker.createTracker(session.id);
        await rejectsWith(checker.check(), MESSAGES.running);
        assert.deepEqual(session.evaluatedExpressions(), []);
    });

    it('detects a running debuggee the tracker missed', async () => {
        const { checker, fake, session, tracker } = setup();
        // A session started before the extension activated: no tracker, so the adapter is asked.
        const untracked = new FakeDebugSession('untracked', 'debugpy');
        untracked.handlers.set('stackTrace', () => {
            throw new Error('Thread 1 is not suspended');
        });
        fake.activeDebugSession = untracked;
        assert.equal(tracker.isPaused('untracked'), undefined);
        await rejectsWith(checker.check(), MESSAGES.running);
        assert.deepEqual(untracked.requests.map((request) => request.command), ['threads', 'stackTrace']);
        assert.deepEqual(session.requests, []);
    });

    it('rejects when the server is not running', async () => {
        const { checker, server, session } = setup();
        server.running = false;
        await rejectsWith(checker.check(), MESSAGES.serverNotRunning, ['Restart Server', 'Show Logs']);
        assert.deepEqual(session.requests, []);
    });

    it('reports a frame without a model', async () => {
        const state = setup();
        state.models = [];
        await rejectsWith(state.checker.check(), MESSAGES.noModel, ['Enter Expression']);
        assert.ok(!state.session.evaluatedExpressions().some((expression) => expression.startsWith('SNAPSHOT')));
    });

    it('reports an expression that is not a module', async () => {
        const { checker, session, memory } = setup();
        memory.set('session-1', 'optimizer');
        const evaluate = session.evaluate;
        session.evaluate = (expression, args) =>
            expression === snapshotExpression('optimizer')
                ? { result: JSON.stringify({ error: { code: 'not-a-module', message: 'optimizer is a SGD, not a torch.nn.Module.' } }) }
                : evaluate(expression, args);
        await rejectsWith(checker.check(), 'optimizer is a SGD, not a torch.nn.Module.', ['Enter Expression']);
        assert.equal(memory.get('session-1'), undefined);
    });

    it('reports torch missing in the debuggee', async () => {
        const { checker, session } = setup();
        session.evaluate = () => ({
            result: JSON.stringify({ error: { code: 'torch-missing', message: 'torch cannot be imported in the debugged program: No module named torch.' } }),
        });
        await rejectsWith(checker.check(), 'torch cannot be imported in the debugged program: No module named torch.', []);
        assert.deepEqual(session.evaluatedExpressions(), ['INSTALL']);
    });

    it('reports an evaluate timeout', async () => {
        const { checker, session, logger } = setup({ timeoutMs: 30 });
        session.evaluate = () => new Promise(() => undefined);
        const error = await rejectsWith(checker.check(), /did not respond within 30 ms while installing the gradsight probe/, ['Open Setting']);
        assert.match(error.message, /gradsight\.probeTimeoutSeconds/);
        assert.equal(logger.matching('error', 'did not respond').length, 1);
    });

    it('reports a server that does not answer', async () => {
        const { checker, server } = setup({ timeoutMs: 30 });
        server.handlers.set(ANALYZE_SNAPSHOT_REQUEST, () => new Promise(() => undefined));
        await rejectsWith(checker.check(), /gradsight\/analyzeSnapshot to the gradsight language server timed out/, ['Show Logs']);
    });

    it('reports a syntax error in a typed expression', async () => {
        const { checker, session, fake, memory } = setup();
        fake.dialogs.inputBox.push('trainer.');
        session.evaluate = (expression) => {
            if (expression === 'INSTALL') {
                return { result: '{"probe": {}}' };
            }
            throw new Error('SyntaxError: invalid syntax');
        };
        await rejectsWith(
            checker.check({ enterExpression: true }),
            /reading the gradients of trainer\.: SyntaxError: invalid syntax\. Check the model expression "trainer\."/,
            ['Enter Expression', 'Show Logs'],
        );
        assert.equal(memory.get('session-1'), undefined);
    });

    it('reports a failed install evaluate', async () => {
        const { checker, session } = setup();
        session.evaluate = () => {
            throw new Error('Unable to find frame 7');
        };
        await rejectsWith(checker.check(), /while installing the gradsight probe: Unable to find frame 7/, ['Show Logs']);
    });

    it('reports an analysis the server failed', async () => {
        const { checker, server } = setup();
        server.handlers.set(ANALYZE_SNAPSHOT_REQUEST, () => {
            throw new Error('Request gradsight/analyzeSnapshot failed with message: KeyError: parameters');
        });
        await rejectsWith(checker.check(), /Check Gradients failed: .*KeyError: parameters/, ['Show Logs']);
    });

    it('reports a malformed analysis', async () => {
        const { checker, server } = setup();
        server.handlers.set(ANALYZE_SNAPSHOT_REQUEST, () => ({ layers: 'none' }));
        await rejectsWith(checker.check(), /cannot read .*"layers" must be an array/, ['Show Logs']);
    });
});

describe('model choice', () => {
    it('uses the only model without asking', async () => {
        const { checker, fake } = setup();
        await checker.check();
        assert.equal(fake.quickPicks.length, 0);
    });

    it('skips modules without parameters', async () => {
        const state = setup();
        state.models = [['model', 33834], ['criterion', 0]];
        const result = await state.checker.check();
        assert.equal(state.fake.quickPicks.length, 0);
        assert.equal(result?.modelExpression, 'model');
    });

    it('asks among several models, largest first', async () => {
        const state = setup();
        state.models = [['teacher', 1000], ['student', 50000]];
        state.fake.dialogs.quickPick.push((items) => items[1]);
        const result = await state.checker.check();
        const labels = state.fake.quickPicks[0].items.map((item) => item.label);
        assert.deepEqual(labels, ['student', 'teacher', ENTER_EXPRESSION_LABEL]);
        assert.equal(result?.modelExpression, 'teacher');
    });

    it('remembers the choice for the session', async () => {
        const state = setup();
        state.models = [['teacher', 1000], ['student', 50000]];
        state.fake.dialogs.quickPick.push((items) => items[1]);
        await state.checker.check();
        const second = await state.checker.check();
        assert.equal(second?.modelExpression, 'teacher');
        assert.equal(state.fake.quickPicks.length, 1);
        assert.equal(state.session.evaluatedExpressions().filter((expression) => expression === 'FIND').length, 1);
    });

    it('asks again when requested', async () => {
        const state = setup();
        state.memory.set('session-1', 'teacher');
        state.fake.dialogs.quickPick.push((items) => items[0]);
        const result = await state.checker.check({ chooseModel: true });
        assert.equal(state.fake.quickPicks.length, 1);
        assert.equal(result?.modelExpression, 'model');
    });

    it('accepts a typed expression', async () => {
        const state = setup();
        state.models = [['teacher', 1000], ['student', 50000]];
        state.fake.dialogs.quickPick.push((items) => items[items.length - 1]);
        state.fake.dialogs.inputBox.push('trainer.model');
        const result = await state.checker.check();
        assert.equal(result?.modelExpression, 'trainer.model');
        assert.ok(state.session.evaluatedExpressions().includes(snapshotExpression('trainer.model')));
        assert.equal(state.memory.get('session-1'), 'trainer.model');
    });

    it('returns nothing when the pick is cancelled', async () => {
        const state = setup();
        state.models = [['teacher', 1000], ['student', 50000]];
        assert.equal(await state.checker.check(), undefined);
        assert.ok(!state.session.evaluatedExpressions().some((expression) => expression.startsWith('SNAPSHOT')));
    });

    it('forgets the choice when the session ends', async () => {
        const state = setup();
        state.memory.set('session-1', 'teacher');
        await state.checker.endSession('session-1');
        assert.equal(state.memory.get('session-1'), undefined);
        assert.deepEqual(state.server.requests.at(-1), { method: END_SESSION_REQUEST, params: { sessionId: 'session-1' } });
    });

    it('keeps choices of other sessions apart', () => {
        const memory = new ChoiceMemory();
        memory.set('a', 'model');
        memory.set('b', 'trainer.model');
        memory.forget('a');
        assert.equal(memory.get('a'), undefined);
        assert.equal(memory.get('b'), 'trainer.model');
    });
});
