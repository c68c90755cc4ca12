// Choosing which model of the paused frame to check, and remembering the choice per debug session. The optimizer
// is not chosen: the probe uses the optimizers of the frame whose parameter groups hold the model's parameters.

import type * as vscode from 'vscode';

import { formatCount } from './format';
import type { Candidate } from './protocol';

/** Remembers the model expression chosen in each debug session, so later checks of that session do not ask. */
export class ChoiceMemory {
    private readonly choices = new Map<string, string>();

    get(sessionId: string): string | undefined {
        return this.choices.get(sessionId);
    }

    set(sessionId: string, modelExpression: string): void {
        this.choices.set(sessionId, modelExpression);
    }

    forget(sessionId: string): void {
        this.choices.delete(sessionId);
    }
}

/** The dialogs of `vscode.window` that the choice uses. */
export type ChoiceDialogs = Pick<typeof vscode.window, 'showQuickPick' | 'showInputBox'>;

export const ENTER_EXPRESSION_LABEL = '$(edit) Enter an expression…';

interface CandidatePickItem extends vscode.QuickPickItem {
    expression?: string;
}

function describeCandidate(candidate: Candidate): CandidatePickItem {
    return {
        label: candidate.expression,
        description: candidate.type,
        detail: candidate.parameterCount === null ? undefined : `${formatCount(candidate.parameterCount)} parameters`,
        expression: candidate.expression,
    };
}

/** Sorts by parameter count, largest first, so the model being trained is usually on top. */
function byParameterCount(a: Candidate, b: Candidate): number {
    return (b.parameterCount ?? -1) - (a.parameterCount ?? -1);
}

/**
 * Asks for a Python expression that evaluates to the model. Returns undefined when the user cancels.
 */
export async function askForModelExpression(dialogs: ChoiceDialogs, value?: string): Promise<string | undefined> {
    const expression = await dialogs.showInputBox({
        title: 'gradsight: Check Gradients',
        prompt: 'Python expression of the model (a torch.nn.Module) in the paused frame',
        placeHolder: 'trainer.model',
        value,
        ignoreFocusOut: true,
        validateInput: (text) => {
            if (text.trim() === '') {
                return 'Enter an expression, such as model or trainer.model.';
            }
            if (/[\r\n]/.test(text)) {
                return 'The expression must fit on one line.';
            }
            return undefined;
        },
    });
    return expression === undefined ? undefined : expression.trim();
}

/**
 * Returns the model to check: the only module found, the one the user picks among several, or an expression the
 * user types. With `alwaysAsk` the pick appears even for a single module. Returns 'none-found' when the frame has no
 * module (and `alwaysAsk` is false), and undefined when the user cancels.
 */
export async function chooseModel(
    dialogs: ChoiceDialogs,
    candidates: Candidate[],
    alwaysAsk = false,
): Promise<string | 'none-found' | undefined> {
    const allModules = candidates.filter((candidate) => candidate.kind === 'module').sort(byParameterCount);
    // A module without parameters (a loss such as CrossEntropyLoss, an activation) has no gradients to check, so it
    // is offered only when no module has parameters.
    const withParameters = allModules.filter((candidate) => candidate.parameterCount !== 0);
    const modules = withParameters.length > 0 ? withParameters : allModules;
    if (modules.length === 0) {
        return alwaysAsk ? askForModelExpression(dialogs) : 'none-found';
    }
    if (modules.length === 1 && !alwaysAsk) {
        return modules[0].expression;
    }

    const items: CandidatePickItem[] = [
        ...modules.map(describeCandidate),
        { label: ENTER_EXPRESSION_LABEL, detail: 'Check another module, such as trainer.model' },
    ];
    const picked = await dialogs.showQuickPick(items, {
        title: 'gradsight: Check Gradients',
        placeHolder: 'Choose the model to check',
        ignoreFocusOut: true,
        matchOnDescription: true,
    });
    if (picked === undefined) {
        return undefined;
    }
    return picked.expression ?? (await askForModelExpression(dialogs));
}
