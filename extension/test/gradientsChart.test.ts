// Unit tests of the Gradient Flow webview page: its Content Security Policy, its script, and the escaping of the
// chart data, checked on the HTML that chart.ts builds and on the script in media/.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';

import {
    buildGradientFlowHtml,
    CHART_DATA_ELEMENT_ID,
    ChartData,
    createNonce,
    serializeForScriptElement,
    toChartData,
} from '../src/gradients/chart';
import { parseSnapshotAnalysis } from '../src/gradients/protocol';
import { tinyLrAnalysis } from './gradientFakes';

const CSP_SOURCE = 'https://file+.vscode-resource.vscode-cdn.net';
const HOSTILE_NAMES = ['<img src=x onerror=alert(1)>', '</script><script>alert(1)</script>', '<!--', 'a & b', '\u2028line'];

function chartDataWith(names: string[]): ChartData {
    const layers = names.map((name) => ({
        name,
        type: 'Linear',
        status: 'tiny-update',
        severity: 'warning',
        gradNorm: 0.1,
        weightNorm: 1,
        meanAbsGrad: 0.01,
        maxAbsGrad: 0.5,
        updateRatio: 1e-11,
        lr: 1e-10,
        tooltip: '',
        parameters: [],
        location: null,
    }));
    return toChartData({
        sessionId: 's',
        sessionName: 'Python: train.py',
        modelExpression: 'model',
        analysis: parseSnapshotAnalysis({ layers }),
        checkedAt: new Date(),
        sessionEnded: false,
    });
}

function buildPage(data: ChartData, nonce = 'a1b2c3d4e5f60718293a4b5c6d7e8f90'): string {
    return buildGradientFlowHtml({
        cspSource: CSP_SOURCE,
        nonce,
        scriptUri: `${CSP_SOURCE}/ext/media/gradientFlow.js`,
        styleUri: `${CSP_SOURCE}/ext/media/gradientFlow.css`,
        data,
    });
}

/** Returns the text of the chart data element: everything between its start tag and the first `</script`. */
function dataElementText(html: string): string {
    const start = html.indexOf(`<script id="${CHART_DATA_ELEMENT_ID}" type="application/json">`);
    assert.ok(start >= 0, 'data element missing');
    const textStart = html.indexOf('>', start) + 1;
    return html.slice(textStart, html.indexOf('</script', textStart));
}

describe('buildGradientFlowHtml', () => {
    it('sets a strict Content Security Policy', () => {
        const html = buildPage(chartDataWith(['fc']));
        const match = /<meta http-equiv="Content-Security-Policy" content="([^"]*)">/.exec(html);
        assert.ok(match, 'CSP meta element missing');
        const directives = match[1].split(';').map((directive) => directive.trim());
        assert.deepEqual(directives, [
            "default-src 'none'",
            `img-src ${CSP_SOURCE}`,
            `style-src ${CSP_SOURCE}`,
            "script-src 'nonce-a1b2c3d4e5f60718293a4b5c6d7e8f90'",
        ]);
        assert.ok(!html.includes('unsafe-inline'));
        assert.ok(!html.includes('unsafe-eval'));
    });

    it('puts the nonce on the only executable script', () => {
        const html = buildPage(chartDataWith(['fc']));
        const scripts = [...html.matchAll(/<script\b([^>]*)>/g)].map((match) => match[1]);
        assert.equal(scripts.length, 2);
        const executable = scripts.filter((attributes) => !attributes.includes('type="application/json"'));
        assert.deepEqual(executable, [` nonce="a1b2c3d4e5f60718293a4b5c6d7e8f90" src="${CSP_SOURCE}/ext/media/gradientFlow.js"`]);
    });

    it('has no inline event handlers or styles', () => {
        const html = buildPage(chartDataWith(HOSTILE_NAMES));
        // The data element contains the names as JSON text, which the browser never parses as markup.
        const markup = html.replace(dataElementText(html), '');
        assert.doesNotMatch(markup, /\son[a-z]+\s*=/i);
        assert.doesNotMatch(markup, /\sstyle\s*=/i);
        assert.doesNotMatch(markup, /<style/i);
    });

    it('loads nothing from the network', () => {
        const html = buildPage(chartDataWith(['fc']));
        const urls = [...html.matchAll(/(?:src|href)="([^"]*)"/g)].map((match) => match[1]);
        assert.ok(urls.length > 0);
        for (const url of urls) {
            assert.ok(url.startsWith(CSP_SOURCE), url);
        }
    });

    it('keeps hostile layer names inside the data', () => {
        const html = buildPage(chartDataWith(HOSTILE_NAMES));
        const text = dataElementText(html);
        assert.ok(!text.includes('<'), text);
        assert.ok(!text.includes('>'), text);
        assert.ok(!text.includes('&'), text);
        assert.ok(!text.includes('\u2028'), text);
        const parsed = JSON.parse(text) as ChartData;
        assert.deepEqual(parsed.layers.map((layer) => layer.name), HOSTILE_NAMES);
        // Only the two script elements of the page itself, whatever the names contain.
        assert.equal(html.match(/<script/g)?.length, 2);
        assert.equal(html.match(/<\/script>/g)?.length, 2);
        assert.ok(!html.includes('<img'));
    });

    it('escapes the attribute values it writes', () => {
        const html = buildGradientFlowHtml({
            cspSource: CSP_SOURCE,
            nonce: 'n"onload="x',
            scriptUri: 'x" onerror="y',
            styleUri: 's',
            data: chartDataWith([]),
        });
        assert.ok(html.includes('nonce="n&quot;onload=&quot;x"'));
        assert.ok(html.includes('src="x&quot; onerror=&quot;y"'));
    });
});

describe('serializeForScriptElement', () => {
    it('round-trips through JSON.parse', () => {
        const value = { name: '</script><!-- & \u2028 \u2029 >' };
        const serialized = serializeForScriptElement(value);
        assert.doesNotMatch(serialized, /[<>&\u2028\u2029]/);
        assert.deepEqual(JSON.parse(serialized), value);
    });
});

describe('createNonce', () => {
    it('returns 32 hex digits that differ each time', () => {
        const first = createNonce();
        assert.match(first, /^[0-9a-f]{32}$/);
        assert.notEqual(createNonce(), first);
    });
});

describe('toChartData', () => {
    it('keeps finite values and marks non-finite ones', () => {
        const analysis = tinyLrAnalysis();
        const layers = analysis.layers as Record<string, unknown>[];
        layers[1] = { ...layers[1], maxAbsGrad: 'inf', meanAbsGrad: 'nan', status: 'non-finite', severity: 'error' };
        const data = toChartData({
            sessionId: 's',
            sessionName: 'Python: train.py',
            modelExpression: 'model',
            analysis: parseSnapshotAnalysis(analysis),
            checkedAt: new Date(),
            sessionEnded: true,
        });
        assert.equal(data.title, 'Gradient Flow: model');
        assert.match(data.subtitle, /debug session ended$/);
        assert.deepEqual(data.layers[0], {
            name: '0.0',
            status: 'tiny-update',
            severity: 'warning',
            meanAbsGrad: 0.000456,
            maxAbsGrad: 0.0789,
            updateRatio: 4.9e-13,
            nonFinite: false,
            hasLocation: true,
        });
        assert.equal(data.layers[1].maxAbsGrad, null);
        assert.equal(data.layers[1].nonFinite, true);
        assert.equal(data.layers[1].hasLocation, false);
    });

    it('has no layers before a check', () => {
        assert.deepEqual(toChartData(undefined).layers, []);
    });
});

describe('media/gradientFlow.js', () => {
    // The tests run from out/test, two folders below the repository root.
    const script = readFileSync(path.join(__dirname, '..', '..', 'media', 'gradientFlow.js'), 'utf8');

    it('never parses strings as HTML or code', () => {
        for (const sink of ['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'eval(', 'new Function', 'setAttribute(\'on', 'setAttribute("on']) {
            assert.ok(!script.includes(sink), `the chart script uses ${sink}`);
        }
    });

    it('reads the data element the page writes', () => {
        assert.ok(script.includes(`getElementById('${CHART_DATA_ELEMENT_ID}')`));
    });

    it('fetches nothing', () => {
        for (const call of ['fetch(', 'XMLHttpRequest', 'WebSocket', 'import(']) {
            assert.ok(!script.includes(call), `the chart script uses ${call}`);
        }
    });
});
