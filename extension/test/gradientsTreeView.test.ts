// Unit tests of the Gradients view's tree items and of the number and Markdown formatting behind them. The tree
// item, icon, colour and Markdown classes are the fakes of gradientFakes.ts, which record what the view sets.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { escapeMarkdown, formatCount, formatMeasurement, summarizeValue } from '../src/gradients/format';
import { parseSnapshotAnalysis, STATUSES } from '../src/gradients/protocol';
import type { CheckResult } from '../src/gradients/results';
import { STATUS_PRESENTATION } from '../src/gradients/statuses';
import { GradientNode, GradientsTreeProvider, OPEN_LOCATION_COMMAND } from '../src/gradients/treeView';
import { FakeGradientsVscode, FakeMarkdownString, FakeThemeIcon, FakeTreeItem, tinyLrAnalysis } from './gradientFakes';

function resultFrom(analysis: Record<string, unknown>): CheckResult {
    return {
        sessionId: 'session-1',
        sessionName: 'Python: train.py',
        modelExpression: 'model',
        analysis: parseSnapshotAnalysis(analysis),
        checkedAt: new Date(2026, 0, 1, 12, 0, 0),
        sessionEnded: false,
    };
}

function layer(name: string, status: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
        name,
        type: 'Linear',
        status,
        severity: status === 'ok' ? null : 'warning',
        gradNorm: 0.1,
        weightNorm: 1,
        meanAbsGrad: 0.01,
        maxAbsGrad: 0.5,
        updateRatio: 1e-3,
        lr: 0.01,
        tooltip: '',
        parameters: [],
        location: null,
        ...extra,
    };
}

function providerWith(analysis: Record<string, unknown>): GradientsTreeProvider {
    const provider = new GradientsTreeProvider(new FakeGradientsVscode().api);
    provider.show(resultFrom(analysis));
    return provider;
}

function item(provider: GradientsTreeProvider, node: GradientNode): FakeTreeItem {
    return provider.getTreeItem(node) as unknown as FakeTreeItem;
}

function layerNodes(provider: GradientsTreeProvider): GradientNode[] {
    const model = provider.getChildren()[0];
    return provider.getChildren(model);
}

describe('formatMeasurement', () => {
    it('formats values in plain and exponent notation', () => {
        assert.equal(formatMeasurement(0.0123), '0.0123');
        assert.equal(formatMeasurement(2.5), '2.5');
        assert.equal(formatMeasurement(4.9e-13), '4.9e-13');
        assert.equal(formatMeasurement(1e-10), '1e-10');
        assert.equal(formatMeasurement(123456), '1.23e5');
        assert.equal(formatMeasurement(0), '0');
    });

    it('names missing and non-finite values', () => {
        assert.equal(formatMeasurement(null), 'n/a');
        assert.equal(formatMeasurement('nan'), 'NaN');
        assert.equal(formatMeasurement('-inf'), '-Inf');
        assert.equal(formatMeasurement(Number.POSITIVE_INFINITY), 'Inf');
    });
});

describe('escapeMarkdown', () => {
    it('turns HTML into entities', () => {
        assert.equal(escapeMarkdown('<img src=x onerror=alert(1)>'), '&lt;img src=x onerror=alert\\(1\\)&gt;');
    });

    it('escapes Markdown punctuation and links', () => {
        assert.equal(escapeMarkdown('[click](command:evil) *a* `b` |c|'), '\\[click\\]\\(command:evil\\) \\*a\\* \\`b\\` \\|c\\|');
    });

    it('keeps the text on one line', () => {
        assert.equal(escapeMarkdown('a\nb'), 'a b');
    });
});

describe('formatCount and summarizeValue', () => {
    it('groups thousands', () => {
        assert.equal(formatCount(23466), '23,466');
    });

    it('summarizes optimizers and lists', () => {
        assert.equal(summarizeValue([{ type: 'SGD', names: ['optimizer'] }]), 'SGD (optimizer)');
        assert.equal(summarizeValue(['cpu', 'cuda:0']), 'cpu, cuda:0');
        assert.equal(summarizeValue([]), 'none');
        assert.equal(summarizeValue(33834), '33,834');
        assert.equal(summarizeValue(1.19), '1.19');
    });
});

describe('GradientsTreeProvider', () => {
    it('shows nothing before a check', () => {
        const provider = new GradientsTreeProvider(new FakeGradientsVscode().api);
        assert.deepEqual(provider.getChildren(), []);
    });

    it('puts the model first, then findings and notes', () => {
        const provider = providerWith(tinyLrAnalysis());
        const roots = provider.getChildren().map((node) => item(provider, node));
        assert.deepEqual(
            roots.map((root) => root.label),
            ['model', 'Findings', 'No optimizer step was seen between the checks.'],
        );
        assert.equal(roots[0].collapsibleState, 2);
        assert.match(String(roots[0].description), /Sequential · 23,466 parameters · 1 tiny-update/);
    });

    it('lists each layer with status and numbers', () => {
        const provider = providerWith(tinyLrAnalysis());
        const [conv, linear] = layerNodes(provider).map((node) => item(provider, node));
        assert.equal(conv.label, '0.0');
        assert.equal(conv.description, 'tiny-update · grad norm 0.0123 · update/weight 4.9e-13');
        assert.equal(linear.description, 'ok · grad norm 0.5 · update/weight 0.004');
        assert.match(String(conv.accessibilityInformation?.label), /status tiny-update/);
    });

    it('gives each status its icon and colour', () => {
        for (const status of STATUSES) {
            const provider = providerWith({ layers: [layer('fc', status, { severity: null })] });
            const icon = item(provider, layerNodes(provider)[0]).iconPath as FakeThemeIcon;
            assert.equal(icon.id, STATUS_PRESENTATION[status].icon, status);
            const expectedColor = {
                error: 'problemsErrorIcon.foreground',
                warning: 'problemsWarningIcon.foreground',
                information: 'problemsInfoIcon.foreground',
                hint: 'problemsInfoIcon.foreground',
                none: 'testing.iconPassed',
            }[STATUS_PRESENTATION[status].severity];
            assert.equal(icon.color?.id, expectedColor, status);
        }
    });

    it('colours by the server severity when given', () => {
        const provider = providerWith({ layers: [layer('fc', 'tiny-update', { severity: 'error' })] });
        const icon = item(provider, layerNodes(provider)[0]).iconPath as FakeThemeIcon;
        assert.equal(icon.color?.id, 'problemsErrorIcon.foreground');
    });

    it('shows a question icon for an unknown status', () => {
        const provider = providerWith({ layers: [layer('fc', 'sleepy')] });
        assert.equal((item(provider, layerNodes(provider)[0]).iconPath as FakeThemeIcon).id, 'question');
    });

    it('builds a tooltip with every number', () => {
        const provider = providerWith(tinyLrAnalysis());
        const tooltip = item(provider, layerNodes(provider)[0]).tooltip as FakeMarkdownString;
        assert.equal(tooltip.isTrusted, false);
        assert.equal(tooltip.supportHtml, false);
        for (const expected of ['gradient norm | 0\\.0123', 'weight norm | 2\\.5', 'mean \\|grad\\| | 4\\.56e\\-4', 'max \\|grad\\| | 0\\.0789', 'update\\-to\\-weight ratio | 4\\.9e\\-13', 'learning rate | 1e\\-10']) {
            assert.ok(tooltip.value.includes(expected), `tooltip lacks ${expected}:\n${tooltip.value}`);
        }
        assert.ok(tooltip.value.startsWith('**0\\.0 \\(Conv2d\\): tiny\\-update**\n\nexpected update'), tooltip.value);
    });

    it('explains the status without a server tooltip', () => {
        const provider = providerWith({ layers: [layer('fc', 'frozen')] });
        const tooltip = (item(provider, layerNodes(provider)[0]).tooltip as FakeMarkdownString).value;
        assert.ok(tooltip.startsWith('**fc** (Linear): frozen\n\nAll parameters of the layer have `requires_grad=False`.'), tooltip);
    });

    it('escapes user data in tooltips', () => {
        const name = '<img src=x onerror=alert(1)>';
        const provider = providerWith({
            layers: [layer(name, 'no-grad', { tooltip: `${name} has [no](command:x) grad`, parameters: [{ name: '<b>w</b>', status: 'no-grad' }] })],
        });
        const layerNode = layerNodes(provider)[0];
        const tooltip = (item(provider, layerNode).tooltip as FakeMarkdownString).value;
        assert.ok(!tooltip.includes('<img'), tooltip);
        assert.ok(tooltip.includes('&lt;img src=x onerror=alert\\(1\\)&gt;'), tooltip);
        assert.ok(!tooltip.includes('[no](command:x)'), tooltip);
        assert.equal(item(provider, layerNode).label, name);

        const parameter = item(provider, provider.getChildren(layerNode)[0]);
        const parameterTooltip = (parameter.tooltip as FakeMarkdownString).value;
        assert.ok(!parameterTooltip.includes('<b>'), parameterTooltip);
        assert.ok(parameterTooltip.includes('&lt;b&gt;w&lt;/b&gt;'), parameterTooltip);
    });

    it('lists parameters as children', () => {
        const provider = providerWith(tinyLrAnalysis());
        const conv = layerNodes(provider)[0];
        const parameters = provider.getChildren(conv).map((node) => item(provider, node));
        assert.deepEqual(parameters.map((parameter) => parameter.label), ['weight', 'bias']);
        assert.equal(parameters[0].description, 'tiny-update · grad norm 0.012 · update/weight 4.8e-13');
        const tooltip = (parameters[0].tooltip as FakeMarkdownString).value;
        assert.ok(tooltip.includes('| shape | \\[16, 3, 3, 3\\] |'), tooltip);
        assert.ok(tooltip.includes('| requires grad | true |'), tooltip);
        assert.equal(provider.getParent(provider.getChildren(conv)[0]), conv);
        assert.equal(item(provider, conv).collapsibleState, 1);
        assert.equal(item(provider, layerNodes(provider)[1]).collapsibleState, 0);
    });

    it('opens the layer location on click', () => {
        const provider = providerWith(tinyLrAnalysis());
        const [conv, linear] = layerNodes(provider).map((node) => item(provider, node));
        assert.equal(conv.command?.command, OPEN_LOCATION_COMMAND);
        assert.deepEqual(conv.command?.arguments, [
            { uri: 'file:///home/ada/project/train.py', range: { start: { line: 8, character: 4 }, end: { line: 8, character: 30 } } },
        ]);
        assert.equal(linear.command, undefined);
        assert.match((linear.tooltip as FakeMarkdownString).value, /No source location was found/);
    });

    it('lists findings with severity icons', () => {
        const provider = providerWith(tinyLrAnalysis());
        const group = provider.getChildren()[1];
        const findings = provider.getChildren(group).map((node) => item(provider, node));
        assert.equal(findings.length, 2);
        assert.equal((findings[0].iconPath as FakeThemeIcon).id, 'warning');
        assert.equal(findings[0].description, 'GS909 · 0.0');
        assert.equal(findings[0].command?.command, OPEN_LOCATION_COMMAND);
        assert.equal((findings[1].iconPath as FakeThemeIcon).id, 'error');
        assert.equal(findings[1].command, undefined);
    });

    it('marks the check of an ended session', () => {
        const provider = providerWith(tinyLrAnalysis());
        provider.markSessionEnded('other-session');
        assert.doesNotMatch(String(item(provider, provider.getChildren()[0]).description), /ended/);
        provider.markSessionEnded('session-1');
        assert.match(String(item(provider, provider.getChildren()[0]).description), /debug session ended$/);
    });

    it('keeps item ids stable across checks', () => {
        const provider = providerWith(tinyLrAnalysis());
        const first = layerNodes(provider).map((node) => item(provider, node).id);
        provider.show(resultFrom(tinyLrAnalysis()));
        assert.deepEqual(layerNodes(provider).map((node) => item(provider, node).id), first);
        assert.deepEqual(first, ['layer/0.0', 'layer/4']);
    });
});
