/** Configuration section that contains every gradsight setting. */
export const CONFIG_SECTION = 'gradsight';

/** Full id of the interpreter setting, as used by `affectsConfiguration` and the settings editor. */
export const INTERPRETER_SETTING = `${CONFIG_SECTION}.interpreter`;

/**
 * Read access to the `gradsight` configuration section, already scoped to a workspace folder. The extension
 * passes `vscode.workspace.getConfiguration('gradsight', folder)`, which has this shape.
 */
export interface ConfigurationSource {
    get<T>(key: string): T | undefined;
}

/** Values that `${...}` variables in settings expand to. */
export interface VariableContext {
    /** File system path of the workspace folder the setting applies to, if any. */
    workspaceFolder?: string;
    userHome: string;
    env: Record<string, string | undefined>;
}

export interface GradsightSettings {
    /**
     * Interpreter command from `gradsight.interpreter` with variables expanded: the executable followed by any
     * extra arguments. Empty when the setting is unset.
     */
    interpreter: string[];
}

/**
 * Expands `${workspaceFolder}`, `${userHome}` and `${env:NAME}` in a setting value. A variable that has no value
 * (`${workspaceFolder}` with no folder open) stays in the text, so the error that follows shows it.
 */
export function resolveVariables(value: string, context: VariableContext): string {
    return value.replace(/\$\{([^}]+)\}/g, (match: string, name: string) => {
        if (name === 'workspaceFolder') {
            return context.workspaceFolder ?? match;
        }
        if (name === 'userHome') {
            return context.userHome;
        }
        if (name.startsWith('env:')) {
            return context.env[name.slice('env:'.length)] ?? '';
        }
        return match;
    });
}

/**
 * Normalizes the raw `gradsight.interpreter` value. The manifest declares an array of strings, but a hand-edited
 * settings.json may hold a single string, which is taken as the executable. Entries that are not non-empty strings
 * are dropped.
 */
function normalizeInterpreter(raw: unknown): string[] {
    if (typeof raw === 'string') {
        return raw.trim() === '' ? [] : [raw];
    }
    if (!Array.isArray(raw)) {
        return [];
    }
    return raw.filter((part): part is string => typeof part === 'string' && part !== '');
}

/** Reads the gradsight settings for one workspace folder and expands variables in them. */
export function readSettings(config: ConfigurationSource, context: VariableContext): GradsightSettings {
    const interpreter = normalizeInterpreter(config.get<unknown>('interpreter'));
    return {
        interpreter: interpreter.map((part) => resolveVariables(part, context)),
    };
}

/** Checker settings sent to the server; they override `[tool.gradsight]` in the project's pyproject.toml. */
export interface CheckerSettings {
    select: string[];
    ignore: string[];
    severity: Record<string, string>;
    thresholds: Record<string, number>;
}

const SEVERITIES = new Set(['error', 'warning', 'information', 'hint']);

function stringList(raw: unknown): string[] {
    return Array.isArray(raw) ? raw.filter((item): item is string => typeof item === 'string' && item.trim() !== '') : [];
}

function plainObject(raw: unknown): Record<string, unknown> {
    return raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {};
}

/**
 * Reads `gradsight.select`, `ignore`, `severity` and `thresholds`. Entries of the wrong type are dropped here;
 * the server validates codes and names and logs what it ignores.
 */
export function readCheckerSettings(config: ConfigurationSource): CheckerSettings {
    const severity: Record<string, string> = {};
    for (const [code, level] of Object.entries(plainObject(config.get<unknown>('severity')))) {
        if (typeof level === 'string' && SEVERITIES.has(level)) {
            severity[code] = level;
        }
    }
    const thresholds: Record<string, number> = {};
    for (const [name, value] of Object.entries(plainObject(config.get<unknown>('thresholds')))) {
        if (typeof value === 'number' && Number.isFinite(value)) {
            thresholds[name] = value;
        }
    }
    return {
        select: stringList(config.get<unknown>('select')),
        ignore: stringList(config.get<unknown>('ignore')),
        severity,
        thresholds,
    };
}

/** Converts checker settings to the server's initializationOptions; an empty `select` means "not set". */
export function buildInitializationOptions(settings: CheckerSettings): Record<string, unknown> {
    const options: Record<string, unknown> = {
        ignore: settings.ignore,
        severity: settings.severity,
        thresholds: settings.thresholds,
    };
    if (settings.select.length > 0) {
        options.select = settings.select;
    }
    return options;
}
