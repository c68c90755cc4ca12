import type { SnapshotAnalysis } from './protocol';

/** The outcome of one successful Check Gradients run, as the view, the chart and the diagnostics show it. */
export interface CheckResult {
    sessionId: string;
    sessionName: string;
    /** Python expression of the model in the paused frame, such as `model` or `trainer.model`. */
    modelExpression: string;
    analysis: SnapshotAnalysis;
    checkedAt: Date;
    /** True once the debug session that produced the check has ended. */
    sessionEnded: boolean;
}
