// Unit tests of the runtime diagnostics. The diagnostic collection and classes are the fakes of gradientFakes.ts.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseSnapshotAnalysis } from '../src/gradients/protocol';
import type { CheckResult } from '../src/gradients/results';
import { RUNTIME_DIAGNOSTIC_SOURCE, RuntimeDiagnostics } from '../src/gradients/runtimeDiagnostics';
import { FakeGradientsVscode, tinyLrAnalysis } from './gradientFakes';

function result(sessionId = 'session-1'): CheckResult {
    return {
        sessionId,
        sessionName: 'Python: train.py',
        modelExpression: 'model',
        analysis: parseSnapshotAnalysis(tinyLrAnalysis()),
        checkedAt: new Date(),
        sessionEnded: false,
    };
}

describe('RuntimeDiagnostics', () => {
    it('publishes located findings', () => {
        const fake = new FakeGradientsVscode();
        const diagnostics = new RuntimeDiagnostics(fake.api);
        diagnostics.show(result());

        const collection = fake.diagnosticCollections[0];
        assert.deepEqual([...collection.entries.keys()], ['file:///home/ada/project/train.py']);
        const [diagnostic] = collection.entries.get('file:///home/ada/project/train.py') ?? [];
        assert.equal(diagnostic.source, RUNTIME_DIAGNOSTIC_SOURCE);
        assert.equal(diagnostic.code, 'GS909');
        assert.equal(diagnostic.severity, 1);
        assert.equal(diagnostic.range.start.line, 8);
        assert.match(diagnostic.message, /^layer 0\.0: expected update-to-weight ratio/);
        assert.match(diagnostic.message, /found at run time in the paused debug session "Python: train\.py"/);
    });

    it('replaces diagnostics on the next check', () => {
        const fake = new FakeGradientsVscode();
        const diagnostics = new RuntimeDiagnostics(fake.api);
        diagnostics.show(result());
        const empty = result();
        empty.analysis.findings = [];
        diagnostics.show(empty);
        assert.equal(fake.diagnosticCollections[0].entries.size, 0);
    });

    it('clears when its session ends', () => {
        const fake = new FakeGradientsVscode();
        const diagnostics = new RuntimeDiagnostics(fake.api);
        diagnostics.show(result('session-1'));
        diagnostics.clearSession('session-2');
        assert.equal(fake.diagnosticCollections[0].entries.size, 1);
        diagnostics.clearSession('session-1');
        assert.equal(fake.diagnosticCollections[0].entries.size, 0);
    });
});
