/**
 * Log sink used by the extension's logic modules. VS Code's `LogOutputChannel` satisfies it, and tests pass a
 * recording implementation.
 */
export interface Logger {
    info(message: string): void;
    warn(message: string): void;
    error(message: string): void;
}

/** Formats an unknown thrown value for a log line or a notification. */
export function describeError(error: unknown): string {
    if (error instanceof Error) {
        return error.message;
    }
    return String(error);
}
