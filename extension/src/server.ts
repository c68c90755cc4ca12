import * as path from 'node:path';

import { describeError, Logger } from './logger';
import { formatCommand } from './python';

/** Process that runs the language server over stdio. */
export interface ServerLaunch {
    command: string;
    args: string[];
    env: Record<string, string>;
    cwd?: string;
}

/**
 * Builds the server command `<interpreter> -m gradsight lsp`. The bundled libraries directory is prepended to
 * PYTHONPATH so the server and its dependencies load from the extension rather than from the interpreter's
 * site-packages, and PYTHONNOUSERSITE=1 keeps packages in the user's site directory from shadowing them.
 */
export function buildServerLaunch(options: {
    interpreter: string[];
    bundledLibsDir: string;
    baseEnv: Record<string, string | undefined>;
    cwd?: string;
    platform?: NodeJS.Platform;
}): ServerLaunch {
    const platform = options.platform ?? process.platform;
    const delimiter = platform === 'win32' ? path.win32.delimiter : path.posix.delimiter;

    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(options.baseEnv)) {
        if (value !== undefined) {
            env[key] = value;
        }
    }

    // Environment variable names are case-insensitive on Windows, so an existing `PythonPath` must be replaced
    // rather than joined by a second entry.
    const pythonPathKey =
        Object.keys(env).find((key) => (platform === 'win32' ? key.toUpperCase() === 'PYTHONPATH' : key === 'PYTHONPATH')) ??
        'PYTHONPATH';
    const existing = env[pythonPathKey];
    delete env[pythonPathKey];
    env.PYTHONPATH = existing ? `${options.bundledLibsDir}${delimiter}${existing}` : options.bundledLibsDir;
    env.PYTHONNOUSERSITE = '1';

    const [command, ...extraArgs] = options.interpreter;
    return {
        command,
        args: [...extraArgs, '-m', 'gradsight', 'lsp'],
        env,
        cwd: options.cwd,
    };
}

/**
 * The part of vscode-languageclient's `LanguageClient` that ServerManager drives. ServerManager starts each client
 * at most once and disposes it when it is no longer needed, including after a failed start.
 */
export interface ServerClient {
    start(): Promise<void>;
    dispose(): Promise<void>;
}

export type ServerState = 'stopped' | 'starting' | 'running' | 'stopping';

export interface ServerManagerOptions {
    /**
     * Chooses the interpreter and builds the launch. Returns undefined when no interpreter can run the server,
     * after telling the user why.
     */
    resolveLaunch(): Promise<ServerLaunch | undefined>;
    createClient(launch: ServerLaunch): ServerClient;
    logger: Logger;
}

/**
 * Starts, stops and restarts the language server. Operations run one at a time in call order, because
 * vscode-languageclient 9 rejects `stop()` on a client that is still starting. Restart requests that arrive while
 * an earlier restart is still waiting in the queue share it, since that restart reads the settings only when it
 * runs.
 *
 * NOTE: a server that never responds to `initialize` keeps its client starting, so later operations wait until that
 * server process exits.
 */
export class ServerManager {
    private client: ServerClient | undefined;
    private currentState: ServerState = 'stopped';
    private queue: Promise<void> = Promise.resolve();
    private queuedRestart: Promise<void> | undefined;
    private disposed = false;

    constructor(private readonly options: ServerManagerOptions) {}

    get state(): ServerState {
        return this.currentState;
    }

    /** Stops the running server, if any, and starts a new one with the current settings. */
    restart(reason: string): Promise<void> {
        if (this.queuedRestart !== undefined) {
            this.options.logger.info(`Restart requested (${reason}) while another restart is queued, so it joins that one.`);
            return this.queuedRestart;
        }
        const restart = this.enqueue(async () => {
            this.queuedRestart = undefined;
            if (this.client !== undefined) {
                this.options.logger.info(`Restarting the server (${reason}).`);
            }
            await this.stopClient();
            await this.startClient(reason);
        });
        this.queuedRestart = restart;
        return restart;
    }

    /** Stops the running server, if any. */
    stop(): Promise<void> {
        return this.enqueue(() => this.stopClient());
    }

    /** Stops the server for good. Restarts that are still queued do nothing once this is called. */
    dispose(): Promise<void> {
        this.disposed = true;
        return this.stop();
    }

    private enqueue(operation: () => Promise<void>): Promise<void> {
        const run = this.queue.then(operation);
        // A failed operation must not block the ones queued after it. Each operation logs its own errors.
        this.queue = run.catch(() => undefined);
        return run;
    }

    private async startClient(reason: string): Promise<void> {
        if (this.disposed) {
            return;
        }
        this.currentState = 'starting';

        let launch: ServerLaunch | undefined;
        try {
            launch = await this.options.resolveLaunch();
        } catch (error) {
            this.options.logger.error(`Failed to prepare the server launch: ${describeError(error)}`);
        }
        if (launch === undefined || this.disposed) {
            this.currentState = 'stopped';
            return;
        }

        this.options.logger.info(`Starting the server (${reason}): ${formatCommand([launch.command, ...launch.args])}`);
        let client: ServerClient;
        try {
            client = this.options.createClient(launch);
        } catch (error) {
            this.options.logger.error(`Failed to create the language client: ${describeError(error)}`);
            this.currentState = 'stopped';
            return;
        }
        this.client = client;
        try {
            await client.start();
        } catch (error) {
            this.options.logger.error(`The server failed to start: ${describeError(error)}`);
            this.client = undefined;
            this.currentState = 'stopped';
            await this.disposeFailedClient(client);
            return;
        }
        this.currentState = 'running';
        this.options.logger.info('The server is running.');
    }

    private async stopClient(): Promise<void> {
        const client = this.client;
        if (client === undefined) {
            return;
        }
        this.client = undefined;
        this.currentState = 'stopping';
        this.options.logger.info('Stopping the server.');
        try {
            await client.dispose();
        } catch (error) {
            this.options.logger.error(`Failed to stop the server cleanly: ${describeError(error)}`);
        } finally {
            this.currentState = 'stopped';
        }
    }

    /**
     * Disposes a client whose start failed. vscode-languageclient 9 rejects this with "Client is not running" but
     * still terminates the server process if it is alive, which is the part that matters here.
     */
    private async disposeFailedClient(client: ServerClient): Promise<void> {
        try {
            await client.dispose();
        } catch {
            // Expected for a client in the start-failed state, as described above.
        }
    }
}
