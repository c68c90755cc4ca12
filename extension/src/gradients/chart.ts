// The Gradient Flow webview: a bar chart of each layer's gradient magnitudes and update-to-weight ratio, drawn by
// media/gradientFlow.js from data embedded in the page.

import { randomBytes } from 'node:crypto';
import type * as vscode from 'vscode';

import type { LayerReport, Measurement, SourceLocation } from './protocol';
import type { CheckResult } from './results';
import type { GradientsVscode } from './vscodeApi';

export const GRADIENT_FLOW_VIEW_TYPE = 'gradsight.gradientFlow';

/** Id of the `<script type="application/json">` element that carries the chart data. */
export const CHART_DATA_ELEMENT_ID = 'gradient-flow-data';

/** One layer as the chart script reads it. Values that are missing or not finite are null. */
export interface ChartLayer {
    name: string;
    status: string;
    severity: string;
    meanAbsGrad: number | null;
    maxAbsGrad: number | null;
    updateRatio: number | null;
    /** True when a measurement is NaN or infinite, which a log scale cannot place. */
    nonFinite: boolean;
    hasLocation: boolean;
}

export interface ChartData {
    title: string;
    subtitle: string;
    layers: ChartLayer[];
    /** Update-to-weight ratios drawn as reference lines: below `tinyUpdate` the weights barely move. */
    thresholds: { tinyUpdate: number; typicalUpdate: number };
}

/** Message from the chart script asking to open the source of the layer at `index` in ChartData.layers. */
export interface OpenLayerMessage {
    type: 'openLayer';
    index: number;
}

function finiteOrNull(value: Measurement): number | null {
    return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function isNonFinite(value: Measurement): boolean {
    if (typeof value === 'number') {
        return !Number.isFinite(value);
    }
    return typeof value === 'string' && /nan|inf/i.test(value);
}

function toChartLayer(layer: LayerReport): ChartLayer {
    const values = [layer.meanAbsGrad, layer.maxAbsGrad, layer.updateRatio];
    return {
        name: layer.name,
        status: layer.status,
        severity: layer.severity ?? (layer.status === 'ok' ? 'none' : 'warning'),
        meanAbsGrad: finiteOrNull(layer.meanAbsGrad),
        maxAbsGrad: finiteOrNull(layer.maxAbsGrad),
        updateRatio: finiteOrNull(layer.updateRatio),
        nonFinite: values.some(isNonFinite),
        hasLocation: layer.location !== null,
    };
}

/** Converts a check to the chart's data. With no check the chart shows how to run one. */
export function toChartData(result: CheckResult | undefined): ChartData {
    const thresholds = { tinyUpdate: 1e-7, typicalUpdate: 1e-3 };
    if (result === undefined) {
        return { title: 'Gradient Flow', subtitle: '', layers: [], thresholds };
    }
    const ended = result.sessionEnded ? ', debug session ended' : '';
    return {
        title: `Gradient Flow: ${result.modelExpression}`,
        subtitle: `${result.sessionName}, checked at ${result.checkedAt.toLocaleTimeString()}${ended}`,
        layers: result.analysis.layers.map(toChartLayer),
        thresholds,
    };
}

/**
 * Serializes data as JSON that is safe inside an HTML `<script>` element: `<`, `>` and `&` become `\u` escapes, so
 * a layer name containing `</script>` or `<!--` cannot end the element, and U+2028/U+2029 are escaped as well.
 */
export function serializeForScriptElement(data: unknown): string {
    return JSON.stringify(data)
        .replace(/</g, '\\u003c')
        .replace(/>/g, '\\u003e')
        .replace(/&/g, '\\u0026')
        .replace(/\u2028/g, '\\u2028')
        .replace(/\u2029/g, '\\u2029');
}

/** Escapes text for an HTML attribute value in double quotes. */
export function escapeHtmlAttribute(text: string): string {
    return text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Returns a fresh nonce for the page's script: 128 random bits in hex. */
export function createNonce(): string {
    return randomBytes(16).toString('hex');
}

export interface ChartPageOptions {
    /** `webview.cspSource`: the origin the webview loads local resources from. */
    cspSource: string;
    nonce: string;
    scriptUri: string;
    styleUri: string;
    data: ChartData;
}

/**
 * Builds the webview page. Its Content Security Policy allows only the extension's stylesheet and the one script
 * carrying the nonce, no inline styles or event handlers, and no network access. User data (layer names) travels
 * only inside the JSON element, and the script writes it with `textContent`.
 */
export function buildGradientFlowHtml(options: ChartPageOptions): string {
    const csp = [
        "default-src 'none'",
        `img-src ${options.cspSource}`,
        `style-src ${options.cspSource}`,
        `script-src 'nonce-${options.nonce}'`,
    ].join('; ');
    return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${escapeHtmlAttribute(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${escapeHtmlAttribute(options.styleUri)}">
<title>Gradient Flow</title>
</head>
<body>
<header>
<h1 id="title"></h1>
<p id="subtitle"></p>
</header>
<div id="legend" class="legend"></div>
<div id="chart" class="chart"></div>
<p id="empty" class="empty" hidden>No gradients to show yet. Pause a Python debug session after loss.backward() and run gradsight: Check Gradients.</p>
<script id="${CHART_DATA_ELEMENT_ID}" type="application/json">${serializeForScriptElement(options.data)}</script>
<script nonce="${escapeHtmlAttribute(options.nonce)}" src="${escapeHtmlAttribute(options.scriptUri)}"></script>
</body>
</html>
`;
}

type PanelApi = Pick<GradientsVscode, 'window' | 'Uri' | 'ViewColumn'>;

function isOpenLayerMessage(message: unknown): message is OpenLayerMessage {
    const candidate = message as Partial<OpenLayerMessage> | undefined;
    return candidate?.type === 'openLayer' && Number.isInteger(candidate.index);
}

/** Opens, refreshes and disposes the single Gradient Flow panel. */
export class GradientFlowPanel {
    private panel: vscode.WebviewPanel | undefined;
    private result: CheckResult | undefined;

    constructor(
        private readonly api: PanelApi,
        private readonly extensionUri: vscode.Uri,
        private readonly openLocation: (location: SourceLocation) => unknown,
    ) {}

    /** Shows the panel with the given check, creating the panel when it is closed. */
    show(result: CheckResult | undefined): void {
        this.result = result;
        if (this.panel === undefined) {
            this.panel = this.createPanel();
        } else {
            this.panel.reveal(undefined, true);
        }
        this.render();
    }

    /** Redraws an open panel with a new check. A closed panel stays closed. */
    update(result: CheckResult | undefined): void {
        this.result = result;
        if (this.panel !== undefined) {
            this.render();
        }
    }

    dispose(): void {
        this.panel?.dispose();
        this.panel = undefined;
    }

    private get mediaUri(): vscode.Uri {
        return this.api.Uri.joinPath(this.extensionUri, 'media');
    }

    private createPanel(): vscode.WebviewPanel {
        const panel = this.api.window.createWebviewPanel(
            GRADIENT_FLOW_VIEW_TYPE,
            'Gradient Flow',
            { viewColumn: this.api.ViewColumn.Beside, preserveFocus: true },
            { enableScripts: true, localResourceRoots: [this.mediaUri] },
        );
        panel.iconPath = this.api.Uri.joinPath(this.mediaUri, 'gradients.svg');
        panel.webview.onDidReceiveMessage((message: unknown) => this.handleMessage(message));
        panel.onDidDispose(() => {
            if (this.panel === panel) {
                this.panel = undefined;
            }
        });
        return panel;
    }

    private render(): void {
        const panel = this.panel;
        if (panel === undefined) {
            return;
        }
        const webview = panel.webview;
        webview.html = buildGradientFlowHtml({
            cspSource: webview.cspSource,
            nonce: createNonce(),
            scriptUri: webview.asWebviewUri(this.api.Uri.joinPath(this.mediaUri, 'gradientFlow.js')).toString(),
            styleUri: webview.asWebviewUri(this.api.Uri.joinPath(this.mediaUri, 'gradientFlow.css')).toString(),
            data: toChartData(this.result),
        });
    }

    private handleMessage(message: unknown): void {
        if (!isOpenLayerMessage(message)) {
            return;
        }
        const location = this.result?.analysis.layers[message.index]?.location;
        if (location) {
            this.openLocation(location);
        }
    }
}
