// The Gradients tree view in the Run and Debug side bar: the model, its layers with their status, and their
// parameters, plus the findings and notes of the last check.

import type * as vscode from 'vscode';

import { escapeMarkdown, formatCount, formatMeasurement, humanizeFieldName, summarizeValue } from './format';
import type { FindingReport, LayerReport, Measurement, ParameterReport, Severity, SourceLocation } from './protocol';
import type { CheckResult } from './results';
import { presentStatus, severityColorId } from './statuses';
import type { GradientsVscode } from './vscodeApi';

export const GRADIENTS_VIEW_ID = 'gradsight.gradients';

/** Command that opens a layer's or a finding's source location. Its argument is a SourceLocation. */
export const OPEN_LOCATION_COMMAND = 'gradsight.openLocation';

export type GradientNode =
    | { kind: 'model'; result: CheckResult }
    | { kind: 'layer'; layer: LayerReport; parent: GradientNode }
    | { kind: 'parameter'; layer: LayerReport; parameter: ParameterReport; parent: GradientNode }
    | { kind: 'findings'; findings: FindingReport[] }
    | { kind: 'finding'; finding: FindingReport; index: number; parent: GradientNode }
    | { kind: 'note'; text: string; index: number };

type TreeApi = Pick<
    GradientsVscode,
    'TreeItem' | 'TreeItemCollapsibleState' | 'ThemeIcon' | 'ThemeColor' | 'MarkdownString' | 'EventEmitter'
>;

const SEVERITY_ICONS: Record<Severity, string> = {
    error: 'error',
    warning: 'warning',
    information: 'info',
    hint: 'lightbulb',
};

function toMeasurement(value: unknown): Measurement {
    return typeof value === 'number' || typeof value === 'string' ? value : null;
}

/** Builds the one-line summary shown after a layer's or parameter's name. */
export function describeMeasurements(status: string | undefined, gradNorm: Measurement | undefined, updateRatio: Measurement | undefined): string {
    const parts = [];
    if (status !== undefined) {
        parts.push(status);
    }
    parts.push(`grad norm ${formatMeasurement(gradNorm)}`);
    parts.push(`update/weight ${formatMeasurement(updateRatio)}`);
    return parts.join(' · ');
}

function tableRow(label: string, value: string): string {
    return `| ${escapeMarkdown(label)} | ${escapeMarkdown(value)} |`;
}

/** Escapes multi-line text for Markdown and keeps its line breaks. */
function escapeMarkdownLines(text: string): string {
    return text
        .split(/\r\n|\r|\n/)
        .map((line) => escapeMarkdown(line))
        .join('  \n');
}

/** Builds the Markdown of a layer's tooltip: the status, the server's explanation of it and every number. */
export function buildLayerTooltip(layer: LayerReport): string {
    const lines: string[] = [];
    const [serverTitle, ...serverLines] = layer.tooltip.split(/\r\n|\r|\n/);
    if (layer.tooltip.trim() === '') {
        // Without the server's explanation of this layer, the tooltip explains the status in general.
        const type = layer.type === '' ? '' : ` (${escapeMarkdown(layer.type)})`;
        lines.push(`**${escapeMarkdown(layer.name)}**${type}: ${escapeMarkdown(layer.status)}`, '', presentStatus(layer.status).meaning, '');
    } else {
        // The server's first line names the layer and its status, and the lines after it give the reason.
        lines.push(`**${escapeMarkdown(serverTitle)}**`, '');
        if (serverLines.length > 0) {
            lines.push(escapeMarkdownLines(serverLines.join('\n')), '');
        }
    }
    lines.push(
        '| Measurement | Value |',
        '|---|---|',
        tableRow('gradient norm', formatMeasurement(layer.gradNorm)),
        tableRow('weight norm', formatMeasurement(layer.weightNorm)),
        tableRow('mean |grad|', formatMeasurement(layer.meanAbsGrad)),
        tableRow('max |grad|', formatMeasurement(layer.maxAbsGrad)),
        tableRow('update-to-weight ratio', formatMeasurement(layer.updateRatio)),
        tableRow('learning rate', formatMeasurement(layer.lr)),
        tableRow('parameters', String(layer.parameters.length)),
    );
    if (layer.location === null) {
        lines.push('', 'No source location was found for this layer.');
    }
    return lines.join('\n');
}

/** Formats a parameter field for the tooltip. A shape reads like `torch.Size`, a group as optimizer and group index. */
function formatParameterField(name: string, value: unknown): string {
    if (name === 'shape' && Array.isArray(value)) {
        return `[${value.join(', ')}]`;
    }
    if (name === 'group') {
        return Array.isArray(value) && value.length === 2 ? `optimizer ${value[0]}, group ${value[1]}` : 'in no optimizer';
    }
    return summarizeValue(value);
}

/** Builds the Markdown of a parameter's tooltip: a table of every field the server sent. */
export function buildParameterTooltip(layer: LayerReport, parameter: ParameterReport): string {
    const title = `**${escapeMarkdown(`${layer.name}.${parameter.name}`)}**`;
    const lines = [parameter.status === undefined ? title : `${title}: ${escapeMarkdown(parameter.status)}`, ''];
    const fields = Object.entries(parameter.fields);
    if (fields.length > 0) {
        lines.push('| Field | Value |', '|---|---|');
        for (const [name, value] of fields) {
            lines.push(tableRow(humanizeFieldName(name), formatParameterField(name, value)));
        }
    }
    return lines.join('\n');
}

function buildModelTooltip(result: CheckResult): string {
    const lines = [`**${escapeMarkdown(result.modelExpression)}**`, ''];
    lines.push('| Field | Value |', '|---|---|');
    lines.push(tableRow('debug session', result.sessionName));
    lines.push(tableRow('checked at', result.checkedAt.toLocaleTimeString()));
    for (const [name, value] of Object.entries(result.analysis.model)) {
        lines.push(tableRow(humanizeFieldName(name), summarizeValue(value)));
    }
    return lines.join('\n');
}

/** Counts the layers per status, worst first, as in "2 tiny-update, 1 frozen". Healthy layers are left out. */
function summarizeStatuses(layers: LayerReport[]): string {
    const counts = new Map<string, number>();
    for (const layer of layers) {
        if (layer.status !== 'ok') {
            counts.set(layer.status, (counts.get(layer.status) ?? 0) + 1);
        }
    }
    if (counts.size === 0) {
        return `${layers.length} layers, all ok`;
    }
    return [...counts.entries()].map(([status, count]) => `${count} ${status}`).join(', ');
}

/**
 * Supplies the Gradients view. `show` replaces the displayed check, and `markSessionEnded` keeps it with a note
 * that its debug session has ended.
 */
export class GradientsTreeProvider implements vscode.TreeDataProvider<GradientNode> {
    private readonly changeEmitter: vscode.EventEmitter<GradientNode | undefined | void>;
    readonly onDidChangeTreeData: vscode.Event<GradientNode | undefined | void>;
    private result: CheckResult | undefined;
    private roots: GradientNode[] = [];
    private readonly children = new Map<GradientNode, GradientNode[]>();

    constructor(private readonly api: TreeApi) {
        this.changeEmitter = new api.EventEmitter<GradientNode | undefined | void>();
        this.onDidChangeTreeData = this.changeEmitter.event;
    }

    get current(): CheckResult | undefined {
        return this.result;
    }

    /** The model node of the displayed check, for `TreeView.reveal`. */
    get modelNode(): GradientNode | undefined {
        return this.roots.find((node) => node.kind === 'model');
    }

    show(result: CheckResult | undefined): void {
        this.result = result;
        this.buildNodes();
        this.changeEmitter.fire();
    }

    markSessionEnded(sessionId: string): void {
        if (this.result?.sessionId === sessionId && !this.result.sessionEnded) {
            this.show({ ...this.result, sessionEnded: true });
        }
    }

    getChildren(element?: GradientNode): GradientNode[] {
        return element === undefined ? this.roots : (this.children.get(element) ?? []);
    }

    getParent(element: GradientNode): GradientNode | undefined {
        return 'parent' in element ? element.parent : undefined;
    }

    getTreeItem(element: GradientNode): vscode.TreeItem {
        switch (element.kind) {
            case 'model':
                return this.modelItem(element.result);
            case 'layer':
                return this.layerItem(element.layer);
            case 'parameter':
                return this.parameterItem(element.layer, element.parameter);
            case 'findings':
                return this.findingsItem(element.findings);
            case 'finding':
                return this.findingItem(element.finding, element.index);
            case 'note':
                return this.noteItem(element.text, element.index);
        }
    }

    private buildNodes(): void {
        this.children.clear();
        this.roots = [];
        const result = this.result;
        if (result === undefined) {
            return;
        }

        const model: GradientNode = { kind: 'model', result };
        const layers: GradientNode[] = result.analysis.layers.map((layer) => ({ kind: 'layer', layer, parent: model }));
        this.children.set(model, layers);
        for (const layerNode of layers) {
            if (layerNode.kind === 'layer') {
                const { layer } = layerNode;
                this.children.set(
                    layerNode,
                    layer.parameters.map((parameter) => ({ kind: 'parameter', layer, parameter, parent: layerNode })),
                );
            }
        }
        this.roots.push(model);

        const { findings, notes } = result.analysis;
        if (findings.length > 0) {
            const group: GradientNode = { kind: 'findings', findings };
            this.children.set(
                group,
                findings.map((finding, index) => ({ kind: 'finding', finding, index, parent: group })),
            );
            this.roots.push(group);
        }
        notes.forEach((text, index) => this.roots.push({ kind: 'note', text, index }));
    }

    private icon(id: string, severity: Severity | 'none'): vscode.ThemeIcon {
        return new this.api.ThemeIcon(id, new this.api.ThemeColor(severityColorId(severity)));
    }

    private markdown(value: string): vscode.MarkdownString {
        // Untrusted and without HTML: command links and raw HTML in the text are not rendered.
        const markdown = new this.api.MarkdownString(value);
        markdown.isTrusted = false;
        markdown.supportHtml = false;
        return markdown;
    }

    private openCommand(location: SourceLocation | null, title: string): vscode.Command | undefined {
        return location === null ? undefined : { command: OPEN_LOCATION_COMMAND, title, arguments: [location] };
    }

    private modelItem(result: CheckResult): vscode.TreeItem {
        const item = new this.api.TreeItem(result.modelExpression, this.api.TreeItemCollapsibleState.Expanded);
        item.id = 'model';
        const type = result.analysis.model.type;
        const parameterCount = result.analysis.model.parameterCount;
        const parts = [
            typeof type === 'string' ? type : undefined,
            typeof parameterCount === 'number' ? `${formatCount(parameterCount)} parameters` : undefined,
            summarizeStatuses(result.analysis.layers),
            result.sessionEnded ? 'debug session ended' : undefined,
        ];
        item.description = parts.filter((part) => part !== undefined).join(' · ');
        item.tooltip = this.markdown(buildModelTooltip(result));
        item.iconPath = new this.api.ThemeIcon('symbol-structure');
        item.contextValue = 'gradsight.model';
        return item;
    }

    private layerItem(layer: LayerReport): vscode.TreeItem {
        const collapsible =
            layer.parameters.length > 0 ? this.api.TreeItemCollapsibleState.Collapsed : this.api.TreeItemCollapsibleState.None;
        const item = new this.api.TreeItem(layer.name, collapsible);
        item.id = `layer/${layer.name}`;
        item.description = describeMeasurements(layer.status, layer.gradNorm, layer.updateRatio);
        const presentation = presentStatus(layer.status);
        item.iconPath = this.icon(presentation.icon, layer.status === 'ok' ? 'none' : (layer.severity ?? presentation.severity));
        item.tooltip = this.markdown(buildLayerTooltip(layer));
        item.command = this.openCommand(layer.location, 'Open Layer Definition');
        item.contextValue = 'gradsight.layer';
        item.accessibilityInformation = {
            label: `Layer ${layer.name}, status ${layer.status}, gradient norm ${formatMeasurement(layer.gradNorm)}, update-to-weight ratio ${formatMeasurement(layer.updateRatio)}`,
        };
        return item;
    }

    private parameterItem(layer: LayerReport, parameter: ParameterReport): vscode.TreeItem {
        const item = new this.api.TreeItem(parameter.name, this.api.TreeItemCollapsibleState.None);
        item.id = `layer/${layer.name}/parameter/${parameter.name}`;
        item.description = describeMeasurements(parameter.status, toMeasurement(parameter.fields.gradNorm), toMeasurement(parameter.fields.updateRatio));
        const status = parameter.status ?? layer.status;
        const presentation = presentStatus(status);
        item.iconPath = this.icon(presentation.icon, status === 'ok' ? 'none' : presentation.severity);
        item.tooltip = this.markdown(buildParameterTooltip(layer, parameter));
        item.command = this.openCommand(layer.location, 'Open Layer Definition');
        item.contextValue = 'gradsight.parameter';
        return item;
    }

    private findingsItem(findings: FindingReport[]): vscode.TreeItem {
        const item = new this.api.TreeItem('Findings', this.api.TreeItemCollapsibleState.Expanded);
        item.id = 'findings';
        item.description = String(findings.length);
        item.iconPath = new this.api.ThemeIcon('checklist');
        return item;
    }

    private findingItem(finding: FindingReport, index: number): vscode.TreeItem {
        const item = new this.api.TreeItem(finding.message, this.api.TreeItemCollapsibleState.None);
        item.id = `finding/${index}`;
        item.description = [finding.code, finding.layer].filter((part) => part !== null && part !== '').join(' · ');
        item.iconPath = this.icon(SEVERITY_ICONS[finding.severity], finding.severity);
        item.tooltip = this.markdown(
            [`**${escapeMarkdown(finding.code)}** (${finding.severity})`, '', escapeMarkdownLines(finding.message)].join('\n'),
        );
        item.command = this.openCommand(finding.location, 'Open Finding');
        return item;
    }

    private noteItem(text: string, index: number): vscode.TreeItem {
        const item = new this.api.TreeItem(text, this.api.TreeItemCollapsibleState.None);
        item.id = `note/${index}`;
        item.iconPath = new this.api.ThemeIcon('info');
        item.tooltip = this.markdown(escapeMarkdownLines(text));
        return item;
    }
}
