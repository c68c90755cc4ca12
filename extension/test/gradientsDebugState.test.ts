// Unit tests of DebugPauseTracker, fed with the Debug Adapter Protocol messages a debugpy session exchanges.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { DebugPauseTracker, isPythonDebugType } from '../src/gradients/debugState';

function stopped(threadId?: number) {
    return { type: 'event', event: 'stopped', body: { reason: 'breakpoint', threadId } };
}

describe('DebugPauseTracker', () => {
    it('knows nothing of untracked sessions', () => {
        assert.equal(new DebugPauseTracker().isPaused('other'), undefined);
    });

    it('starts running and pauses on stopped', () => {
        const tracker = new DebugPauseTracker();
        const adapter = tracker.createTracker('s');
        assert.equal(tracker.isPaused('s'), false);
        adapter.onDidSendMessage(stopped(1));
        assert.equal(tracker.isPaused('s'), true);
        assert.equal(tracker.lastStoppedThread('s'), 1);
    });

    it('resumes on a continue request', () => {
        const tracker = new DebugPauseTracker();
        const adapter = tracker.createTracker('s');
        adapter.onDidSendMessage(stopped(1));
        adapter.onWillReceiveMessage({ type: 'request', command: 'continue', arguments: { threadId: 1 } });
        assert.equal(tracker.isPaused('s'), false);
    });

    it('resumes on step requests', () => {
        for (const command of ['next', 'stepIn', 'stepOut']) {
            const tracker = new DebugPauseTracker();
            const adapter = tracker.createTracker('s');
            adapter.onDidSendMessage(stopped(1));
            adapter.onWillReceiveMessage({ type: 'request', command });
            assert.equal(tracker.isPaused('s'), false, command);
        }
    });

    it('stays paused on evaluate requests', () => {
        const tracker = new DebugPauseTracker();
        const adapter = tracker.createTracker('s');
        adapter.onDidSendMessage(stopped(1));
        adapter.onWillReceiveMessage({ type: 'request', command: 'evaluate' });
        adapter.onWillReceiveMessage({ type: 'request', command: 'stackTrace' });
        assert.equal(tracker.isPaused('s'), true);
    });

    it('tracks continued events per thread', () => {
        const tracker = new DebugPauseTracker();
        const adapter = tracker.createTracker('s');
        adapter.onDidSendMessage(stopped(1));
        adapter.onDidSendMessage(stopped(2));
        adapter.onDidSendMessage({ type: 'event', event: 'continued', body: { threadId: 2, allThreadsContinued: false } });
        assert.equal(tracker.isPaused('s'), true);
        assert.equal(tracker.lastStoppedThread('s'), 1);
        adapter.onDidSendMessage({ type: 'event', event: 'continued', body: { threadId: 1, allThreadsContinued: true } });
        assert.equal(tracker.isPaused('s'), false);
    });

    it('forgets sessions that end', () => {
        const tracker = new DebugPauseTracker();
        const adapter = tracker.createTracker('s');
        adapter.onDidSendMessage(stopped(1));
        adapter.onExit();
        assert.equal(tracker.isPaused('s'), undefined);
    });

    it('notifies on pause and resume only', () => {
        const tracker = new DebugPauseTracker();
        let changes = 0;
        tracker.onDidChange(() => changes++);
        const adapter = tracker.createTracker('s');
        adapter.onDidSendMessage(stopped(1));
        adapter.onDidSendMessage(stopped(2));
        adapter.onDidSendMessage({ type: 'event', event: 'output', body: { output: 'loss 2.3' } });
        adapter.onWillReceiveMessage({ type: 'request', command: 'continue' });
        assert.equal(changes, 2);
    });
});

describe('isPythonDebugType', () => {
    it('accepts debugpy and python only', () => {
        assert.equal(isPythonDebugType('debugpy'), true);
        assert.equal(isPythonDebugType('python'), true);
        assert.equal(isPythonDebugType('node'), false);
    });
});
