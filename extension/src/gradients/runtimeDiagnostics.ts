// Runtime findings as diagnostics at the source lines the server mapped them to. They live in their own collection,
// apart from the static analysis, and last until the next check or the end of their debug session.

import type * as vscode from 'vscode';

import type { FindingReport, LspRange, Severity } from './protocol';
import type { CheckResult } from './results';
import type { GradientsVscode } from './vscodeApi';

export const RUNTIME_DIAGNOSTIC_SOURCE = 'gradsight (runtime)';
export const RUNTIME_DIAGNOSTIC_COLLECTION = 'gradsight-runtime';

type DiagnosticsApi = Pick<GradientsVscode, 'languages' | 'Uri' | 'Range' | 'Diagnostic' | 'DiagnosticSeverity'>;

export function toVscodeRange(api: Pick<GradientsVscode, 'Range'>, range: LspRange): vscode.Range {
    return new api.Range(range.start.line, range.start.character, range.end.line, range.end.character);
}

function toDiagnosticSeverity(api: DiagnosticsApi, severity: Severity): vscode.DiagnosticSeverity {
    switch (severity) {
        case 'error':
            return api.DiagnosticSeverity.Error;
        case 'warning':
            return api.DiagnosticSeverity.Warning;
        case 'information':
            return api.DiagnosticSeverity.Information;
        case 'hint':
            return api.DiagnosticSeverity.Hint;
    }
}

/** Builds the message of a runtime diagnostic, which says that it comes from the debug run, not from the source. */
export function formatRuntimeMessage(finding: FindingReport, sessionName: string): string {
    return `${finding.message} (found at run time in the paused debug session "${sessionName}")`;
}

/** Groups the findings that have a location into diagnostics per document URI. */
export function buildRuntimeDiagnostics(api: DiagnosticsApi, result: CheckResult): Map<string, vscode.Diagnostic[]> {
    const byUri = new Map<string, vscode.Diagnostic[]>();
    for (const finding of result.analysis.findings) {
        if (finding.location === null) {
            continue;
        }
        const diagnostic = new api.Diagnostic(
            toVscodeRange(api, finding.location.range),
            formatRuntimeMessage(finding, result.sessionName),
            toDiagnosticSeverity(api, finding.severity),
        );
        diagnostic.source = RUNTIME_DIAGNOSTIC_SOURCE;
        if (finding.code !== '') {
            diagnostic.code = finding.code;
        }
        const list = byUri.get(finding.location.uri) ?? [];
        list.push(diagnostic);
        byUri.set(finding.location.uri, list);
    }
    return byUri;
}

/** Owns the runtime diagnostic collection and remembers which debug session its diagnostics came from. */
export class RuntimeDiagnostics {
    private readonly collection: vscode.DiagnosticCollection;
    private sessionId: string | undefined;

    constructor(private readonly api: DiagnosticsApi) {
        this.collection = api.languages.createDiagnosticCollection(RUNTIME_DIAGNOSTIC_COLLECTION);
    }

    /** Replaces every runtime diagnostic with those of a new check. */
    show(result: CheckResult): void {
        this.collection.clear();
        this.sessionId = result.sessionId;
        for (const [uri, diagnostics] of buildRuntimeDiagnostics(this.api, result)) {
            this.collection.set(this.api.Uri.parse(uri), diagnostics);
        }
    }

    /** Removes the diagnostics when they came from the given session, which has ended. */
    clearSession(sessionId: string): void {
        if (this.sessionId === sessionId) {
            this.collection.clear();
            this.sessionId = undefined;
        }
    }

    dispose(): void {
        this.collection.dispose();
    }
}
