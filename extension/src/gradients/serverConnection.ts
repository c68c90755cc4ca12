// Access to the running language client for the runtime requests. ServerManager owns the client's life cycle, so
// this module only remembers the client it created last and asks it whether it is running.

/** The part of vscode-languageclient's `LanguageClient` that the runtime requests use. */
export interface RequestClient {
    isRunning(): boolean;
    sendRequest<R>(method: string, params?: unknown): Promise<R>;
}

/** Sends requests to the language server, or reports that no server is running. */
export interface GradsightServer {
    isRunning(): boolean;
    sendRequest<R>(method: string, params?: unknown): Promise<R>;
}

/** The language server was not running when a request had to be sent. */
export class ServerNotRunningError extends Error {
    constructor() {
        super('The gradsight language server is not running.');
    }
}

/**
 * Remembers the language client created last. extension.ts passes each new client through `track`, so after a
 * restart the requests go to the new server.
 */
export class LanguageClientTracker implements GradsightServer {
    private current: RequestClient | undefined;

    track<T extends RequestClient>(client: T): T {
        this.current = client;
        return client;
    }

    isRunning(): boolean {
        return this.current?.isRunning() ?? false;
    }

    sendRequest<R>(method: string, params?: unknown): Promise<R> {
        const client = this.current;
        if (client === undefined || !client.isRunning()) {
            return Promise.reject(new ServerNotRunningError());
        }
        return params === undefined ? client.sendRequest<R>(method) : client.sendRequest<R>(method, params);
    }
}
