import type * as vscode from 'vscode';

/**
 * The members of the `vscode` module that the Check Gradients feature uses, classes included. extension.ts passes
 * the real module and the unit tests pass fakes, so the feature's files import `vscode` for types only.
 */
export interface GradientsVscode {
    window: Pick<
        typeof vscode.window,
        | 'showErrorMessage'
        | 'showWarningMessage'
        | 'showQuickPick'
        | 'showInputBox'
        | 'createTreeView'
        | 'createWebviewPanel'
        | 'withProgress'
        | 'showTextDocument'
        | 'activeTextEditor'
    >;
    debug: Pick<
        typeof vscode.debug,
        | 'activeDebugSession'
        | 'activeStackItem'
        | 'onDidChangeActiveDebugSession'
        | 'onDidTerminateDebugSession'
        | 'registerDebugAdapterTrackerFactory'
    >;
    languages: Pick<typeof vscode.languages, 'createDiagnosticCollection' | 'registerCodeLensProvider'>;
    commands: Pick<typeof vscode.commands, 'registerCommand' | 'executeCommand'>;
    workspace: Pick<typeof vscode.workspace, 'getConfiguration' | 'onDidChangeConfiguration' | 'textDocuments'>;
    Uri: Pick<typeof vscode.Uri, 'parse' | 'file' | 'joinPath'>;
    Range: typeof vscode.Range;
    Selection: typeof vscode.Selection;
    TreeItem: typeof vscode.TreeItem;
    TreeItemCollapsibleState: typeof vscode.TreeItemCollapsibleState;
    ThemeIcon: typeof vscode.ThemeIcon;
    ThemeColor: typeof vscode.ThemeColor;
    MarkdownString: typeof vscode.MarkdownString;
    Diagnostic: typeof vscode.Diagnostic;
    DiagnosticSeverity: typeof vscode.DiagnosticSeverity;
    EventEmitter: typeof vscode.EventEmitter;
    CodeLens: typeof vscode.CodeLens;
    ViewColumn: typeof vscode.ViewColumn;
    ProgressLocation: typeof vscode.ProgressLocation;
    DebugStackFrame: typeof vscode.DebugStackFrame;
    DebugThread: typeof vscode.DebugThread;
}
