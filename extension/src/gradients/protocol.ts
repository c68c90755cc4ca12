// Messages exchanged with the language server for the Check Gradients command, and checks that turn the server's
// untyped JSON into these shapes. The server classifies layers and maps them to source; this side only moves the
// data and draws it.

/** LSP request that returns the Python expressions of the runtime probe. No parameters. */
export const PROBE_REQUEST = 'gradsight/probe';

/** LSP request that classifies a snapshot taken in the debuggee. */
export const ANALYZE_SNAPSHOT_REQUEST = 'gradsight/analyzeSnapshot';

/** LSP request that lets the server drop what it kept of a debug session, such as the previous snapshot. */
export const END_SESSION_REQUEST = 'gradsight/endSession';

/**
 * Python expressions to evaluate in the paused frame. `snapshot` contains the placeholders `{model}` and
 * `{optimizer}`, and `readChunk` contains `{token}` and `{index}`.
 */
export interface ProbeExpressions {
    version: string;
    install: string;
    findCandidates: string;
    snapshot: string;
    readChunk: string;
}

/** A model or optimizer that the probe found among the paused frame's variables. */
export interface Candidate {
    expression: string;
    kind: 'module' | 'optimizer';
    type: string;
    parameterCount: number | null;
}

/** Layer statuses, worst first. The order decides which status a layer shows when several apply. */
export const STATUSES = [
    'non-finite',
    'not-in-optimizer',
    'no-grad',
    'zero-lr',
    'unchanged',
    'zero-grad',
    'exploding',
    'vanishing',
    'tiny-update',
    'frozen-but-changing',
    'frozen',
    'ok',
] as const;

export type LayerStatus = (typeof STATUSES)[number];

export type Severity = 'error' | 'warning' | 'information' | 'hint';

/**
 * A number from the snapshot. JSON has no NaN or infinity, so the server may send them as strings such as "nan" or
 * "inf". Null means the value does not exist, for example the gradient norm of a parameter whose `.grad` is None.
 */
export type Measurement = number | string | null;

export interface LspPosition {
    line: number;
    character: number;
}

export interface LspRange {
    start: LspPosition;
    end: LspPosition;
}

export interface SourceLocation {
    uri: string;
    range: LspRange;
}

/** One parameter of a layer. The server decides which fields it sends, so every field but the name is optional. */
export interface ParameterReport {
    name: string;
    status?: string;
    /** Every other field of the server's object (shape, dtype, gradNorm, group, ...), for the tooltip. */
    fields: Record<string, unknown>;
}

export interface LayerReport {
    name: string;
    /** Module class, such as `Conv2d`. Empty when the server sends none. */
    type: string;
    status: string;
    severity: Severity | undefined;
    gradNorm: Measurement;
    weightNorm: Measurement;
    meanAbsGrad: Measurement;
    maxAbsGrad: Measurement;
    updateRatio: Measurement;
    lr: Measurement;
    tooltip: string;
    parameters: ParameterReport[];
    location: SourceLocation | null;
}

export interface FindingReport {
    code: string;
    severity: Severity;
    message: string;
    layer: string | null;
    location: SourceLocation | null;
}

/** The result of `gradsight/analyzeSnapshot`. */
export interface SnapshotAnalysis {
    /** The server's description of the model (type, parameter counts, devices, optimizers), shown as given. */
    model: Record<string, unknown>;
    layers: LayerReport[];
    findings: FindingReport[];
    notes: string[];
}

/** Raised when the server's response does not have the documented shape. */
export class ProtocolError extends Error {}

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
    return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function requireString(object: JsonObject, key: string, context: string): string {
    const value = object[key];
    if (typeof value !== 'string') {
        throw new ProtocolError(`${context}: "${key}" must be a string, got ${describeJsonType(value)}.`);
    }
    return value;
}

function describeJsonType(value: unknown): string {
    if (value === null) {
        return 'null';
    }
    if (Array.isArray(value)) {
        return 'an array';
    }
    return typeof value === 'object' ? 'an object' : `the ${typeof value} ${JSON.stringify(value)}`;
}

function toMeasurement(value: unknown): Measurement {
    if (typeof value === 'number' || typeof value === 'string') {
        return value;
    }
    return null;
}

function toSeverity(value: unknown): Severity | undefined {
    return value === 'error' || value === 'warning' || value === 'information' || value === 'hint' ? value : undefined;
}

function isPosition(value: unknown): value is LspPosition {
    return isObject(value) && Number.isInteger(value.line) && Number.isInteger(value.character);
}

/** Returns the location, or null when the value is missing or is not an LSP location. */
export function parseLocation(value: unknown): SourceLocation | null {
    if (!isObject(value) || typeof value.uri !== 'string' || !isObject(value.range)) {
        return null;
    }
    const { start, end } = value.range;
    if (!isPosition(start) || !isPosition(end)) {
        return null;
    }
    return { uri: value.uri, range: { start: { line: start.line, character: start.character }, end: { line: end.line, character: end.character } } };
}

export function parseProbeExpressions(value: unknown): ProbeExpressions {
    const context = `Invalid ${PROBE_REQUEST} response`;
    if (!isObject(value)) {
        throw new ProtocolError(`${context}: expected an object, got ${describeJsonType(value)}.`);
    }
    return {
        version: String(value.version ?? ''),
        install: requireString(value, 'install', context),
        findCandidates: requireString(value, 'findCandidates', context),
        snapshot: requireString(value, 'snapshot', context),
        readChunk: requireString(value, 'readChunk', context),
    };
}

function parseCandidateList(entries: unknown, kind: Candidate['kind']): Candidate[] {
    if (!Array.isArray(entries)) {
        return [];
    }
    const candidates: Candidate[] = [];
    for (const entry of entries) {
        if (!isObject(entry) || typeof entry.expression !== 'string') {
            continue;
        }
        candidates.push({
            expression: entry.expression,
            kind,
            type: typeof entry.type === 'string' ? entry.type : '',
            parameterCount: typeof entry.parameters === 'number' ? entry.parameters : null,
        });
    }
    return candidates;
}

/**
 * Reads a findCandidates result, `{"models": [...], "optimizers": [...]}`, keeping the entries that have an
 * expression. `parameters` is the entry's parameter count.
 */
export function parseCandidates(value: unknown): Candidate[] {
    if (!isObject(value)) {
        throw new ProtocolError(`The probe's candidate list must be a JSON object, got ${describeJsonType(value)}.`);
    }
    return [...parseCandidateList(value.models, 'module'), ...parseCandidateList(value.optimizers, 'optimizer')];
}

function parseParameter(value: unknown): ParameterReport | undefined {
    if (!isObject(value) || typeof value.name !== 'string') {
        return undefined;
    }
    return {
        name: value.name,
        status: typeof value.status === 'string' ? value.status : undefined,
        fields: Object.fromEntries(Object.entries(value).filter(([key]) => key !== 'name' && key !== 'status')),
    };
}

function parseLayer(value: unknown, index: number): LayerReport {
    const context = `Invalid ${ANALYZE_SNAPSHOT_REQUEST} response, layer ${index}`;
    if (!isObject(value)) {
        throw new ProtocolError(`${context}: expected an object, got ${describeJsonType(value)}.`);
    }
    const parameters = Array.isArray(value.parameters) ? value.parameters : [];
    return {
        name: requireString(value, 'name', context),
        type: typeof value.type === 'string' ? value.type : '',
        status: typeof value.status === 'string' ? value.status : 'ok',
        severity: toSeverity(value.severity),
        gradNorm: toMeasurement(value.gradNorm),
        weightNorm: toMeasurement(value.weightNorm),
        meanAbsGrad: toMeasurement(value.meanAbsGrad),
        maxAbsGrad: toMeasurement(value.maxAbsGrad),
        updateRatio: toMeasurement(value.updateRatio),
        lr: toMeasurement(value.lr),
        tooltip: typeof value.tooltip === 'string' ? value.tooltip : '',
        parameters: parameters.map(parseParameter).filter((parameter): parameter is ParameterReport => parameter !== undefined),
        location: parseLocation(value.location),
    };
}

function parseFinding(value: unknown): FindingReport | undefined {
    if (!isObject(value) || typeof value.message !== 'string') {
        return undefined;
    }
    return {
        code: typeof value.code === 'string' ? value.code : '',
        severity: toSeverity(value.severity) ?? 'warning',
        message: value.message,
        layer: typeof value.layer === 'string' ? value.layer : null,
        location: parseLocation(value.location),
    };
}

export function parseSnapshotAnalysis(value: unknown): SnapshotAnalysis {
    const context = `Invalid ${ANALYZE_SNAPSHOT_REQUEST} response`;
    if (!isObject(value)) {
        throw new ProtocolError(`${context}: expected an object, got ${describeJsonType(value)}.`);
    }
    if (!Array.isArray(value.layers)) {
        throw new ProtocolError(`${context}: "layers" must be an array, got ${describeJsonType(value.layers)}.`);
    }
    const findings = Array.isArray(value.findings) ? value.findings : [];
    const notes = Array.isArray(value.notes) ? value.notes : [];
    return {
        model: isObject(value.model) ? value.model : {},
        layers: value.layers.map(parseLayer),
        findings: findings.map(parseFinding).filter((finding): finding is FindingReport => finding !== undefined),
        notes: notes.filter((note): note is string => typeof note === 'string'),
    };
}
