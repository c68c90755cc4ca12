// Follows which debug sessions are paused by watching the messages between VS Code and each debug adapter.

/** Debug types of the Python debugger: `debugpy` (current Python extension) and `python` (older releases). */
export const PYTHON_DEBUG_TYPES: readonly string[] = ['debugpy', 'python'];

export function isPythonDebugType(type: string): boolean {
    return PYTHON_DEBUG_TYPES.includes(type);
}

/** A Debug Adapter Protocol message as a tracker sees it. */
interface DapMessage {
    type?: string;
    event?: string;
    command?: string;
    body?: Record<string, unknown>;
}

/** Requests that resume the debuggee. A response to any of them may come with no `continued` event. */
const RESUMING_REQUESTS = new Set(['continue', 'next', 'stepIn', 'stepOut', 'stepBack', 'reverseContinue', 'goto', 'restartFrame']);

interface SessionPauseState {
    /** Threads reported stopped, most recent last. */
    stoppedThreads: number[];
}

/** The subset of `vscode.DebugAdapterTracker` this class implements. */
export interface PauseTrackerCallbacks {
    onWillReceiveMessage(message: unknown): void;
    onDidSendMessage(message: unknown): void;
    onWillStopSession(): void;
    onExit(): void;
}

/**
 * Records, per debug session id, the threads that are stopped. Sessions that started before the tracker was
 * registered are unknown to it, and `isPaused` returns undefined for them.
 */
export class DebugPauseTracker {
    private readonly sessions = new Map<string, SessionPauseState>();
    private readonly listeners = new Set<() => void>();

    /** Registers a listener that runs whenever a session pauses, resumes or ends. */
    onDidChange(listener: () => void): { dispose(): void } {
        this.listeners.add(listener);
        return { dispose: () => this.listeners.delete(listener) };
    }

    /** Returns true or false for a tracked session, undefined for one that is not tracked. */
    isPaused(sessionId: string): boolean | undefined {
        const state = this.sessions.get(sessionId);
        return state === undefined ? undefined : state.stoppedThreads.length > 0;
    }

    /** Returns the thread that stopped last in the session, if it is still stopped. */
    lastStoppedThread(sessionId: string): number | undefined {
        const threads = this.sessions.get(sessionId)?.stoppedThreads ?? [];
        return threads[threads.length - 1];
    }

    /** Creates the adapter tracker for one session, as `DebugAdapterTrackerFactory.createDebugAdapterTracker` does. */
    createTracker(sessionId: string): PauseTrackerCallbacks {
        this.sessions.set(sessionId, { stoppedThreads: [] });
        return {
            onWillReceiveMessage: (message) => this.handleRequest(sessionId, message as DapMessage),
            onDidSendMessage: (message) => this.handleAdapterMessage(sessionId, message as DapMessage),
            onWillStopSession: () => this.forget(sessionId),
            onExit: () => this.forget(sessionId),
        };
    }

    /** Drops a session, for example when VS Code reports that it terminated. */
    forget(sessionId: string): void {
        if (this.sessions.delete(sessionId)) {
            this.notify();
        }
    }

    private handleRequest(sessionId: string, message: DapMessage): void {
        if (message.type === 'request' && message.command !== undefined && RESUMING_REQUESTS.has(message.command)) {
            this.setStopped(sessionId, []);
        }
    }

    private handleAdapterMessage(sessionId: string, message: DapMessage): void {
        if (message.type !== 'event') {
            return;
        }
        const state = this.sessions.get(sessionId);
        if (state === undefined) {
            return;
        }
        const threadId = typeof message.body?.threadId === 'number' ? message.body.threadId : undefined;

        if (message.event === 'stopped') {
            const others = state.stoppedThreads.filter((thread) => thread !== threadId);
            // A stopped event without a thread id still means the program is paused, so it is kept as thread 0
            // and the command asks the adapter for the threads.
            this.setStopped(sessionId, [...others, threadId ?? 0]);
        } else if (message.event === 'continued') {
            const allContinued = message.body?.allThreadsContinued === true || threadId === undefined;
            this.setStopped(sessionId, allContinued ? [] : state.stoppedThreads.filter((thread) => thread !== threadId));
        } else if (message.event === 'thread' && message.body?.reason === 'exited' && threadId !== undefined) {
            this.setStopped(sessionId, state.stoppedThreads.filter((thread) => thread !== threadId));
        } else if (message.event === 'terminated' || message.event === 'exited') {
            this.setStopped(sessionId, []);
        }
    }

    private setStopped(sessionId: string, threads: number[]): void {
        const state = this.sessions.get(sessionId);
        if (state === undefined) {
            return;
        }
        const wasPaused = state.stoppedThreads.length > 0;
        state.stoppedThreads = threads;
        if (wasPaused !== threads.length > 0) {
            this.notify();
        }
    }

    private notify(): void {
        for (const listener of [...this.listeners]) {
            listener();
        }
    }
}
