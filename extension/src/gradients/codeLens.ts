// A "Check Gradients" code lens above the backward and optimizer-step lines of a training loop, shown only while a
// Python debug session is paused, because the check reads the paused program.

import type * as vscode from 'vscode';

import type { GradientsVscode } from './vscodeApi';

export const CHECK_GRADIENTS_COMMAND = 'gradsight.checkGradients';

const BACKWARD_CALL = /\.backward\s*\(/;
/** `optimizer.step(`, `opt.step(`, `self.optim.step(`, `scaler.step(`: not `scheduler.step(`. */
const OPTIMIZER_STEP_CALL = /(?:^|[^\w])(?:\w*optim\w*|opt|scaler)\.step\s*\(/i;

/** Returns the zero-based numbers of the lines that call `backward()` or step an optimizer, skipping comments. */
export function findTrainingStepLines(lines: readonly string[]): number[] {
    const found: number[] = [];
    lines.forEach((line, index) => {
        const code = line.trimStart();
        if (code.startsWith('#')) {
            return;
        }
        if (BACKWARD_CALL.test(code) || OPTIMIZER_STEP_CALL.test(code)) {
            found.push(index);
        }
    });
    return found;
}

type CodeLensApi = Pick<GradientsVscode, 'CodeLens' | 'Range' | 'EventEmitter'>;

export class TrainingLoopCodeLensProvider implements vscode.CodeLensProvider {
    private readonly changeEmitter: vscode.EventEmitter<void>;
    readonly onDidChangeCodeLenses: vscode.Event<void>;

    /** `isShown` decides whether lenses appear: a Python session is paused and the setting allows them. */
    constructor(
        private readonly api: CodeLensApi,
        private readonly isShown: () => boolean,
    ) {
        this.changeEmitter = new api.EventEmitter<void>();
        this.onDidChangeCodeLenses = this.changeEmitter.event;
    }

    /** Makes VS Code ask for the lenses again, after the debug session paused, resumed or ended. */
    refresh(): void {
        this.changeEmitter.fire();
    }

    provideCodeLenses(document: vscode.TextDocument): vscode.CodeLens[] {
        if (!this.isShown()) {
            return [];
        }
        const lines: string[] = [];
        for (let line = 0; line < document.lineCount; line++) {
            lines.push(document.lineAt(line).text);
        }
        return findTrainingStepLines(lines).map(
            (line) =>
                new this.api.CodeLens(new this.api.Range(line, 0, line, 0), {
                    title: '$(pulse) Check Gradients',
                    tooltip: 'Read the gradients and updates of the model in the paused program (gradsight)',
                    command: CHECK_GRADIENTS_COMMAND,
                }),
        );
    }

    dispose(): void {
        this.changeEmitter.dispose();
    }
}
