// The presentation of each layer status in the Gradients view: a codicon, a theme colour and a sentence for the
// tooltip.

import type { LayerStatus, Severity } from './protocol';

export interface StatusPresentation {
    /** Codicon id (https://microsoft.github.io/vscode-codicons/dist/codicon.html). */
    icon: string;
    /** Severity that colours the icon when the server sends none. */
    severity: Severity | 'none';
    /** Meaning of the status for training, for the tooltip. */
    meaning: string;
}

export const STATUS_PRESENTATION: Record<LayerStatus, StatusPresentation> = {
    'non-finite': { icon: 'error', severity: 'error', meaning: 'NaN or Inf in a gradient or a weight.' },
    'not-in-optimizer': {
        icon: 'circle-slash',
        severity: 'error',
        meaning: 'A trainable parameter is in no parameter group of the optimizer, so it is never updated.',
    },
    'no-grad': {
        icon: 'debug-disconnect',
        severity: 'warning',
        meaning: 'A trainable parameter has no gradient (`.grad` is None) after backward: the loss does not reach it.',
    },
    'zero-lr': { icon: 'debug-pause', severity: 'error', meaning: 'The parameter group has a learning rate of 0.' },
    unchanged: {
        icon: 'sync-ignored',
        severity: 'error',
        meaning: 'The value did not change across optimizer steps although its gradient was non-zero.',
    },
    'zero-grad': { icon: 'circle-large-outline', severity: 'warning', meaning: 'The gradient is exactly zero everywhere.' },
    exploding: { icon: 'flame', severity: 'warning', meaning: 'The gradient norm is huge relative to the weight norm.' },
    vanishing: { icon: 'arrow-down', severity: 'warning', meaning: 'The gradient norm is tiny relative to the weight norm.' },
    'tiny-update': {
        icon: 'arrow-small-down',
        severity: 'warning',
        meaning: 'The update-to-weight ratio is below 1e-7, so the weights barely move (healthy training is near 1e-3).',
    },
    'frozen-but-changing': {
        icon: 'unlock',
        severity: 'warning',
        meaning: 'The parameters have `requires_grad=False` but their values change (momentum or weight decay).',
    },
    frozen: { icon: 'lock', severity: 'information', meaning: 'All parameters of the layer have `requires_grad=False`.' },
    ok: { icon: 'pass', severity: 'none', meaning: 'Gradients and updates look healthy.' },
};

/** Presentation for a status the table does not know, for example one added by a newer server. */
const UNKNOWN_STATUS: StatusPresentation = { icon: 'question', severity: 'warning', meaning: 'A status this extension does not know.' };

export function presentStatus(status: string): StatusPresentation {
    return Object.prototype.hasOwnProperty.call(STATUS_PRESENTATION, status)
        ? STATUS_PRESENTATION[status as LayerStatus]
        : UNKNOWN_STATUS;
}

/** Theme colour id for an icon of the given severity. 'none' marks a healthy layer, drawn in the colour of a passed test. */
export function severityColorId(severity: Severity | 'none'): string {
    switch (severity) {
        case 'error':
            return 'problemsErrorIcon.foreground';
        case 'warning':
            return 'problemsWarningIcon.foreground';
        case 'information':
        case 'hint':
            return 'problemsInfoIcon.foreground';
        case 'none':
            return 'testing.iconPassed';
    }
}
