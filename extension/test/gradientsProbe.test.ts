// Unit tests of the probe evaluation: decoding debugpy's results, chunk reassembly, errors and timeouts. The debug
// session is FakeDebugSession, a scripted stand-in for debugpy.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
    decodeChunk,
    decodeJsonResult,
    decodePythonStringRepr,
    EvaluateFailedError,
    EvaluateTimeoutError,
    evaluateProbeJson,
    fillTemplate,
    ProbeOutputError,
    ProbeResultError,
} from '../src/gradients/probe';
import { FakeDebugSession, PROBE_EXPRESSIONS } from './gradientFakes';

/** Python's repr() of a str, for the cases these tests use: single quotes unless the text contains one. */
function pythonRepr(text: string): string {
    const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
    let body = text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\t/g, '\\t');
    if (quote === "'") {
        body = body.replace(/'/g, "\\'");
    }
    return `${quote}${body}${quote}`;
}

function target(session: FakeDebugSession, timeoutMs = 1000) {
    return { session, frameId: 7, timeoutMs };
}

describe('fillTemplate', () => {
    it('replaces every named placeholder verbatim', () => {
        const filled = fillTemplate(PROBE_EXPRESSIONS.snapshot, { model: 'trainer.model', optimizer: 'None' });
        assert.equal(filled, 'SNAPSHOT(lambda: (trainer.model), lambda: (None))');
    });

    it('leaves other braces alone', () => {
        assert.equal(fillTemplate("f({'a': {x}}, {y})", { y: '2' }), "f({'a': {x}}, 2)");
    });

    it('does not interpret dollar patterns', () => {
        assert.equal(fillTemplate('m({model})', { model: "d['$&']" }), "m(d['$&'])");
    });
});

describe('decodePythonStringRepr', () => {
    it('decodes single-quoted text with escapes', () => {
        assert.equal(decodePythonStringRepr(String.raw`'{"a": "b\\c"}\n\t\x41\u00e9\U0001F600'`), '{"a": "b\\c"}\n\tAé😀');
    });

    it('decodes double-quoted text with a single quote', () => {
        assert.equal(decodePythonStringRepr(`"it's"`), "it's");
    });

    it('rejects text that is not a repr', () => {
        assert.equal(decodePythonStringRepr('{"a": 1}'), undefined);
        assert.equal(decodePythonStringRepr(`'a'b'`), undefined);
        assert.equal(decodePythonStringRepr(String.raw`'\q'`), undefined);
        assert.equal(decodePythonStringRepr(`'`), undefined);
    });

    it('round-trips what pythonRepr writes', () => {
        for (const text of ['{"name": "features.0"}', `{"name": "it's"}`, 'a\\b\nc']) {
            assert.equal(decodePythonStringRepr(pythonRepr(text)), text);
        }
    });
});

describe('decodeJsonResult', () => {
    it('keeps raw JSON text', () => {
        assert.deepEqual(decodeJsonResult('{"layers": []}'), { text: '{"layers": []}', encoding: 'raw' });
    });

    it('unquotes a repr result', () => {
        assert.deepEqual(decodeJsonResult(pythonRepr('{"layers": []}')), { text: '{"layers": []}', encoding: 'repr' });
    });
});

describe('decodeChunk', () => {
    it('keeps a raw chunk that starts and ends with quotes', () => {
        assert.equal(decodeChunk('"name": "conv"', 'raw'), '"name": "conv"');
    });

    it('unquotes a repr chunk', () => {
        assert.equal(decodeChunk(pythonRepr('"name": "conv"'), 'repr'), '"name": "conv"');
    });

    it('rejects a repr chunk that is not a string', () => {
        assert.throws(() => decodeChunk('12', 'repr'), ProbeOutputError);
    });
});

describe('evaluateProbeJson', () => {
    it('sends evaluate with frame, repl context and rawString', async () => {
        const session = new FakeDebugSession();
        session.evaluate = () => ({ result: '{"probe": {"version": "1+test"}}' });
        const value = await evaluateProbeJson(target(session), 'INSTALL', PROBE_EXPRESSIONS.readChunk, 'installing');
        assert.deepEqual(value, { probe: { version: '1+test' } });
        assert.deepEqual(session.requests[0], {
            command: 'evaluate',
            args: { expression: 'INSTALL', frameId: 7, context: 'repl', format: { rawString: true } },
        });
    });

    it('reassembles raw chunks in index order', async () => {
        const payload = JSON.stringify({ layers: [{ name: 'features.0', note: '"quoted" text' }], filler: 'x'.repeat(50) });
        const chunks = [payload.slice(0, 17), payload.slice(17, 40), payload.slice(40)];
        const session = new FakeDebugSession();
        session.evaluate = (expression) => {
            if (expression === 'SNAP') {
                return { result: JSON.stringify({ chunked: { token: 'a1b2', count: 3 } }) };
            }
            const match = /^READ\("a1b2", (\d+)\)$/.exec(expression);
            assert.ok(match, `unexpected expression ${expression}`);
            return { result: chunks[Number(match[1])] };
        };
        const value = await evaluateProbeJson(target(session), 'SNAP', PROBE_EXPRESSIONS.readChunk, 'reading');
        assert.deepEqual(value, JSON.parse(payload));
        assert.deepEqual(session.evaluatedExpressions(), ['SNAP', 'READ("a1b2", 0)', 'READ("a1b2", 1)', 'READ("a1b2", 2)']);
    });

    it('reassembles repr chunks', async () => {
        const payload = JSON.stringify({ layers: [{ name: "it's" }] });
        const chunks = [payload.slice(0, 10), payload.slice(10)];
        const session = new FakeDebugSession();
        session.evaluate = (expression) => {
            if (expression === 'SNAP') {
                return { result: pythonRepr(JSON.stringify({ chunked: { token: 't', count: 2 } })) };
            }
            const index = Number(/(\d+)\)$/.exec(expression)?.[1]);
            return { result: pythonRepr(chunks[index]) };
        };
        assert.deepEqual(await evaluateProbeJson(target(session), 'SNAP', PROBE_EXPRESSIONS.readChunk, 'reading'), JSON.parse(payload));
    });

    it('throws the probe error result', async () => {
        const session = new FakeDebugSession();
        session.evaluate = () => ({
            result: JSON.stringify({ error: { code: 'torch-missing', message: 'torch cannot be imported in the debugged program.' } }),
        });
        await assert.rejects(
            evaluateProbeJson(target(session), 'INSTALL', PROBE_EXPRESSIONS.readChunk, 'installing'),
            (error: unknown) =>
                error instanceof ProbeResultError &&
                error.code === 'torch-missing' &&
                error.message === 'torch cannot be imported in the debugged program.',
        );
    });

    it('reports a failed evaluate with its step', async () => {
        const session = new FakeDebugSession();
        session.evaluate = () => {
            throw new Error("NameError: name 'modle' is not defined");
        };
        await assert.rejects(
            evaluateProbeJson(target(session), 'SNAP', PROBE_EXPRESSIONS.readChunk, 'reading the gradients of modle'),
            (error: unknown) =>
                error instanceof EvaluateFailedError && /while reading the gradients of modle: NameError/.test(error.message),
        );
    });

    it('times out an evaluate that never answers', async () => {
        const session = new FakeDebugSession();
        session.evaluate = () => new Promise(() => undefined);
        const started = Date.now();
        await assert.rejects(
            evaluateProbeJson(target(session, 50), 'SNAP', PROBE_EXPRESSIONS.readChunk, 'taking the snapshot'),
            (error: unknown) => error instanceof EvaluateTimeoutError && error.step === 'taking the snapshot' && error.timeoutMs === 50,
        );
        assert.ok(Date.now() - started < 1000);
    });

    it('rejects output that is not JSON', async () => {
        const session = new FakeDebugSession();
        session.evaluate = () => ({ result: '<gradsight probe object at 0x7f>' });
        await assert.rejects(evaluateProbeJson(target(session), 'FIND', PROBE_EXPRESSIONS.readChunk, 'finding'), ProbeOutputError);
    });

    it('rejects a chunked envelope without a count', async () => {
        const session = new FakeDebugSession();
        session.evaluate = () => ({ result: '{"chunked": {"token": "t"}}' });
        await assert.rejects(evaluateProbeJson(target(session), 'SNAP', PROBE_EXPRESSIONS.readChunk, 'reading'), ProbeOutputError);
    });
});
