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
