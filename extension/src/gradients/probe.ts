// Evaluates the server's probe expressions in the paused debuggee through the Debug Adapter Protocol and turns the
// results into JSON values: decodes the returned text, reassembles chunked results and reports probe errors.

/** The part of `vscode.DebugSession` that sends DAP requests. */
export interface DapRequester {
    customRequest(command: string, args?: unknown): Thenable<unknown>;
}

/** The paused frame to evaluate in and the time limit for each `evaluate` request. */
export interface EvaluationTarget {
    session: DapRequester;
    frameId: number;
    timeoutMs: number;
}

/** The debugger did not respond to a request within the time limit. */
export class EvaluateTimeoutError extends Error {
    constructor(
        readonly step: string,
        readonly timeoutMs: number,
    ) {
        super(`The debugger did not respond within ${formatDuration(timeoutMs)} while ${step}.`);
    }
}

/** The debug adapter rejected an `evaluate` request, for example because the expression raised an exception. */
export class EvaluateFailedError extends Error {
    constructor(
        readonly step: string,
        readonly detail: string,
    ) {
        super(`Evaluating the gradsight probe failed while ${step}: ${detail}`);
    }
}

/** The probe ran and returned `{"error": {"code", "message"}}`. */
export class ProbeResultError extends Error {
    constructor(
        readonly code: string,
        message: string,
    ) {
        super(message);
    }
}

/** The probe's output is not the JSON the protocol describes. */
export class ProbeOutputError extends Error {}

/** Formats a time limit: "30 s", "2.5 s", or "50 ms" below one second. */
export function formatDuration(milliseconds: number): string {
    if (milliseconds < 1000) {
        return `${Math.round(milliseconds)} ms`;
    }
    return `${Number((milliseconds / 1000).toFixed(1))} s`;
}

/**
 * Replaces each `{name}` placeholder of a probe template by its value. Only the names given are replaced, because
 * the Python template may contain other braces (dict literals, format strings).
 */
export function fillTemplate(template: string, values: Record<string, string>): string {
    let filled = template;
    for (const [name, value] of Object.entries(values)) {
        filled = filled.split(`{${name}}`).join(value);
    }
    return filled;
}

/** Number of hex digits after `\x`, `\u` and `\U` in a Python string literal. */
const HEX_ESCAPE_LENGTHS: Record<string, number | undefined> = { x: 2, u: 4, U: 8 };

const SIMPLE_ESCAPES: Record<string, string> = {
    '\\': '\\',
    "'": "'",
    '"': '"',
    n: '\n',
    r: '\r',
    t: '\t',
    a: '\x07',
    b: '\b',
    f: '\f',
    v: '\v',
    '0': '\0',
};

/**
 * Decodes the `repr()` of a Python `str` (`'…'` or `"…"`, with backslash escapes). Returns undefined when the text
 * is not such a literal.
 */
export function decodePythonStringRepr(text: string): string | undefined {
    const quote = text[0];
    if (text.length < 2 || (quote !== "'" && quote !== '"') || text[text.length - 1] !== quote) {
        return undefined;
    }
    const body = text.slice(1, -1);
    let decoded = '';
    for (let i = 0; i < body.length; i++) {
        const char = body[i];
        if (char === quote) {
            // An unescaped quote of the same kind cannot occur inside a repr.
            return undefined;
        }
        if (char !== '\\') {
            decoded += char;
            continue;
        }
        const escape = body[i + 1];
        if (escape === undefined) {
            return undefined;
        }
        const hexLength = HEX_ESCAPE_LENGTHS[escape];
        if (hexLength !== undefined) {
            const hex = body.slice(i + 2, i + 2 + hexLength);
            if (!new RegExp(`^[0-9a-fA-F]{${hexLength}}$`).test(hex)) {
                return undefined;
            }
            decoded += String.fromCodePoint(parseInt(hex, 16));
            i += 1 + hexLength;
            continue;
        }
        if (!(escape in SIMPLE_ESCAPES)) {
            return undefined;
        }
        decoded += SIMPLE_ESCAPES[escape];
        i += 1;
    }
    return decoded;
}

/**
 * Encoding of a string in an evaluate result: the string itself (the adapter honoured `format.rawString`) or its
 * Python `repr()`.
 */
export type ResultEncoding = 'raw' | 'repr';

/**
 * Decodes the `result` of an `evaluate` request whose value is a JSON document in a Python string. debugpy returns
 * the string itself when `format.rawString` is set, so the text starts with `{` or `[`. An adapter that ignores the
 * flag returns the string's repr, which starts with a quote.
 */
export function decodeJsonResult(result: string): { text: string; encoding: ResultEncoding } {
    const trimmed = result.trim();
    if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
        return { text: trimmed, encoding: 'raw' };
    }
    const decoded = decodePythonStringRepr(trimmed);
    if (decoded !== undefined) {
        return { text: decoded, encoding: 'repr' };
    }
    return { text: trimmed, encoding: 'raw' };
}

/**
 * Decodes one chunk of a chunked result. A raw chunk is any slice of the JSON text and may itself start and end
 * with a quote, so the encoding seen on the chunked envelope decides, not the chunk's look.
 */
export function decodeChunk(result: string, encoding: ResultEncoding): string {
    if (encoding === 'raw') {
        return result;
    }
    const decoded = decodePythonStringRepr(result.trim());
    if (decoded === undefined) {
        throw new ProbeOutputError(`A chunk of the probe's result is not a Python string: ${preview(result)}`);
    }
    return decoded;
}

function preview(text: string): string {
    return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/** Sends one `evaluate` request in the paused frame and returns the result text, or throws on failure or timeout. */
export async function evaluateInFrame(target: EvaluationTarget, expression: string, step: string): Promise<string> {
    const request = target.session.customRequest('evaluate', {
        expression,
        frameId: target.frameId,
        context: 'repl',
        format: { rawString: true },
    });

    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new EvaluateTimeoutError(step, target.timeoutMs)), target.timeoutMs);
    });

    let body: unknown;
    try {
        body = await Promise.race([Promise.resolve(request), timeout]);
    } catch (error) {
        if (error instanceof EvaluateTimeoutError) {
            throw error;
        }
        throw new EvaluateFailedError(step, error instanceof Error ? error.message : String(error));
    } finally {
        clearTimeout(timer);
    }

    const result = (body as { result?: unknown } | undefined)?.result;
    if (typeof result !== 'string') {
        throw new ProbeOutputError(`The debug adapter's evaluate response has no result text while ${step}.`);
    }
    return result;
}

function parseJson(text: string, description: string): unknown {
    try {
        return JSON.parse(text);
    } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new ProbeOutputError(`The probe's ${description} is not valid JSON (${reason}): ${preview(text)}`);
    }
}

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
    return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Returns the `{token, count}` of a chunked result, or undefined for any other value. */
function readChunkedEnvelope(value: unknown): { token: string; count: number } | undefined {
    if (!isObject(value) || !isObject(value.chunked)) {
        return undefined;
    }
    const { token, count } = value.chunked;
    if ((typeof token !== 'string' && typeof token !== 'number') || !Number.isInteger(count) || (count as number) < 0) {
        throw new ProbeOutputError(`The probe returned a chunked result without a valid token and count: ${preview(JSON.stringify(value))}`);
    }
    return { token: String(token), count: count as number };
}

/** Throws a ProbeResultError when the value is `{"error": {"code", "message"}}`. */
function throwIfProbeError(value: unknown): void {
    if (!isObject(value) || !isObject(value.error)) {
        return;
    }
    const code = typeof value.error.code === 'string' ? value.error.code : 'unknown';
    const message = typeof value.error.message === 'string' ? value.error.message : `The probe reported the error ${code}.`;
    throw new ProbeResultError(code, message);
}

/**
 * Evaluates a probe expression and returns its parsed JSON value. A chunked result is read with the `readChunk`
 * template, one `evaluate` per chunk, and an error result is thrown as a ProbeResultError.
 */
export async function evaluateProbeJson(
    target: EvaluationTarget,
    expression: string,
    readChunkTemplate: string,
    step: string,
): Promise<unknown> {
    const { text, encoding } = decodeJsonResult(await evaluateInFrame(target, expression, step));
    let value = parseJson(text, `result while ${step}`);

    const chunked = readChunkedEnvelope(value);
    if (chunked !== undefined) {
        const parts: string[] = [];
        for (let index = 0; index < chunked.count; index++) {
            // The token goes in as a JSON string literal, quotes included, which is also a Python string literal.
            const chunkExpression = fillTemplate(readChunkTemplate, { token: JSON.stringify(chunked.token), index: String(index) });
            const chunkStep = `${step} (reading part ${index + 1} of ${chunked.count})`;
            parts.push(decodeChunk(await evaluateInFrame(target, chunkExpression, chunkStep), encoding));
        }
        value = parseJson(parts.join(''), `chunked result while ${step}`);
    }

    throwIfProbeError(value);
    return value;
}
