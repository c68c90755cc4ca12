// Text for the Gradients view: numbers in a compact form and user data made safe for Markdown tooltips.

import type { Measurement } from './protocol';

const NON_FINITE_NAMES: Record<string, string> = {
    nan: 'NaN',
    inf: 'Inf',
    '+inf': 'Inf',
    infinity: 'Inf',
    '-inf': '-Inf',
    '-infinity': '-Inf',
};

/**
 * Formats a measurement with three significant digits: plain notation from 0.001 to 9999, exponent notation
 * outside it (`3.14e-11`). A missing value is shown as "n/a".
 */
export function formatMeasurement(value: Measurement | undefined): string {
    if (value === null || value === undefined) {
        return 'n/a';
    }
    if (typeof value === 'string') {
        return NON_FINITE_NAMES[value.trim().toLowerCase()] ?? value;
    }
    if (Number.isNaN(value)) {
        return 'NaN';
    }
    if (!Number.isFinite(value)) {
        return value > 0 ? 'Inf' : '-Inf';
    }
    if (value === 0) {
        return '0';
    }
    const magnitude = Math.abs(value);
    if (magnitude >= 1e-3 && magnitude < 1e4) {
        return String(Number(value.toPrecision(3)));
    }
    return value.toExponential(2).replace(/\.?0+e/, 'e').replace('e+', 'e');
}

/**
 * Escapes text for a MarkdownString so that it renders literally: Markdown punctuation gets a backslash and
 * `<`, `>` and `&` become entities, so a layer named `<img src=x>` cannot become HTML. Line breaks become spaces
 * because a name or message must stay on its line of a table.
 */
export function escapeMarkdown(text: string): string {
    return text
        .replace(/\r\n|\r|\n/g, ' ')
        .replace(/[\\`*_{}[\]()#+\-.!|~]/g, (char) => `\\${char}`)
        .replace(/&/g, '&amp;')
        .replace(/</g, '&lt;')
        .replace(/>/g, '&gt;');
}

/** Turns a camelCase field name from the server (`updateRatio`) into words (`update ratio`). */
export function humanizeFieldName(name: string): string {
    return name
        .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
        .replace(/_/g, ' ')
        .toLowerCase();
}

/** Formats a count with thousands separators, as in "1,234,567". */
export function formatCount(count: number): string {
    return Math.round(count).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/**
 * Formats a JSON value from the server for a tooltip: integers as counts, other numbers as measurements, lists
 * joined by commas, and objects by their `type` and `names` when they have them (an optimizer: `SGD (optimizer)`),
 * else as JSON.
 */
export function summarizeValue(value: unknown): string {
    if (typeof value === 'number' && Number.isSafeInteger(value)) {
        return formatCount(value);
    }
    if (value === null || typeof value === 'number') {
        return formatMeasurement(value);
    }
    if (typeof value === 'string' || typeof value === 'boolean') {
        return String(value);
    }
    if (Array.isArray(value)) {
        return value.length === 0 ? 'none' : value.map(summarizeValue).join(', ');
    }
    if (typeof value === 'object') {
        const { type, names } = value as { type?: unknown; names?: unknown };
        if (typeof type === 'string') {
            return Array.isArray(names) && names.length > 0 ? `${type} (${names.map(String).join(', ')})` : type;
        }
        return JSON.stringify(value);
    }
    return String(value);
}
