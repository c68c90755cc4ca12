// Unit tests of the training-loop code lens. The document and the CodeLens and Range classes are fakes.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { CHECK_GRADIENTS_COMMAND, findTrainingStepLines, TrainingLoopCodeLensProvider } from '../src/gradients/codeLens';
import { FakeCodeLens, FakeGradientsVscode } from './gradientFakes';

const TRAINING_LOOP = [
    'for step in range(30):',
    '    optimizer.zero_grad()',
    '    loss = criterion(model(inputs), labels)',
    '    loss.backward()',
    '    # loss.backward() is commented out here',
    '    optimizer.step()',
    '    scheduler.step()',
    '    scaler.step(opt)',
    '    self.optim.step()',
];

function document(lines: string[]) {
    return { lineCount: lines.length, lineAt: (line: number) => ({ text: lines[line] }) };
}

describe('findTrainingStepLines', () => {
    it('finds backward and optimizer steps', () => {
        assert.deepEqual(findTrainingStepLines(TRAINING_LOOP), [3, 5, 7, 8]);
    });

    it('finds nothing in other code', () => {
        assert.deepEqual(findTrainingStepLines(['import torch', 'x = model.step_size', 'scheduler.step()']), []);
    });
});

describe('TrainingLoopCodeLensProvider', () => {
    it('shows lenses while paused', () => {
        const provider = new TrainingLoopCodeLensProvider(new FakeGradientsVscode().api, () => true);
        const lenses = provider.provideCodeLenses(document(TRAINING_LOOP) as never) as unknown as FakeCodeLens[];
        assert.deepEqual(lenses.map((lens) => lens.range.start.line), [3, 5, 7, 8]);
        assert.equal(lenses[0].command?.command, CHECK_GRADIENTS_COMMAND);
        assert.match(String(lenses[0].command?.title), /Check Gradients/);
    });

    it('shows no lens otherwise', () => {
        const provider = new TrainingLoopCodeLensProvider(new FakeGradientsVscode().api, () => false);
        assert.deepEqual(provider.provideCodeLenses(document(TRAINING_LOOP) as never), []);
    });
});
