import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
    buildInitializationOptions,
    ConfigurationSource,
    readCheckerSettings,
    readSettings,
    resolveVariables,
    VariableContext,
} from '../src/settings';

const context: VariableContext = {
    workspaceFolder: '/home/ada/project',
    userHome: '/home/ada',
    env: { VIRTUAL_ENV: '/home/ada/venvs/torch' },
};

function configWith(values: Record<string, unknown>): ConfigurationSource {
    return { get: <T>(key: string) => values[key] as T | undefined };
}

describe('resolveVariables', () => {
    it('expands workspaceFolder', () => {
        assert.equal(resolveVariables('${workspaceFolder}/.venv/bin/python', context), '/home/ada/project/.venv/bin/python');
    });

    it('expands every occurrence', () => {
        assert.equal(resolveVariables('${workspaceFolder}:${workspaceFolder}', context), '/home/ada/project:/home/ada/project');
    });

    it('expands userHome', () => {
        assert.equal(resolveVariables('${userHome}/bin/python3', context), '/home/ada/bin/python3');
    });

    it('expands environment variables', () => {
        assert.equal(resolveVariables('${env:VIRTUAL_ENV}/bin/python', context), '/home/ada/venvs/torch/bin/python');
    });

    it('expands unset environment variable to empty', () => {
        assert.equal(resolveVariables('${env:NOT_SET}/python', context), '/python');
    });

    it('keeps workspaceFolder without open folder', () => {
        const noFolder: VariableContext = { ...context, workspaceFolder: undefined };
        assert.equal(resolveVariables('${workspaceFolder}/python', noFolder), '${workspaceFolder}/python');
    });

    it('keeps unknown variables', () => {
        assert.equal(resolveVariables('${interpreter}', context), '${interpreter}');
    });

    it('leaves plain text unchanged', () => {
        assert.equal(resolveVariables('/usr/bin/python3', context), '/usr/bin/python3');
    });
});

describe('readSettings', () => {
    it('reads interpreter array with substitution', () => {
        const settings = readSettings(configWith({ interpreter: ['${workspaceFolder}/.venv/bin/python', '-X', 'utf8'] }), context);
        assert.deepEqual(settings.interpreter, ['/home/ada/project/.venv/bin/python', '-X', 'utf8']);
    });

    it('returns empty interpreter when unset', () => {
        assert.deepEqual(readSettings(configWith({}), context).interpreter, []);
    });

    it('returns empty interpreter for default value', () => {
        assert.deepEqual(readSettings(configWith({ interpreter: [] }), context).interpreter, []);
    });

    it('accepts a single string interpreter', () => {
        const settings = readSettings(configWith({ interpreter: '${userHome}/py/bin/python' }), context);
        assert.deepEqual(settings.interpreter, ['/home/ada/py/bin/python']);
    });

    it('ignores blank string interpreter', () => {
        assert.deepEqual(readSettings(configWith({ interpreter: '  ' }), context).interpreter, []);
    });

    it('drops non-string and empty entries', () => {
        const settings = readSettings(configWith({ interpreter: ['/usr/bin/python3', 3, '', null, '-I'] }), context);
        assert.deepEqual(settings.interpreter, ['/usr/bin/python3', '-I']);
    });

    it('ignores values of the wrong type', () => {
        assert.deepEqual(readSettings(configWith({ interpreter: { path: '/usr/bin/python3' } }), context).interpreter, []);
    });
});

describe('readCheckerSettings', () => {
    it('reads select, ignore, severity and thresholds', () => {
        const settings = readCheckerSettings(
            configWith({
                select: ['GS1', 'GS502'],
                ignore: ['GS201'],
                severity: { GS102: 'error' },
                thresholds: { 'lr-min': 1e-8 },
            }),
        );
        assert.deepEqual(settings, {
            select: ['GS1', 'GS502'],
            ignore: ['GS201'],
            severity: { GS102: 'error' },
            thresholds: { 'lr-min': 1e-8 },
        });
    });

    it('drops entries of the wrong type', () => {
        const settings = readCheckerSettings(
            configWith({
                select: 'GS1',
                ignore: ['GS201', 3, ''],
                severity: { GS102: 'loud', GS101: 'hint' },
                thresholds: { 'lr-min': 'small', 'std-floor': 0.05 },
            }),
        );
        assert.deepEqual(settings.select, []);
        assert.deepEqual(settings.ignore, ['GS201']);
        assert.deepEqual(settings.severity, { GS101: 'hint' });
        assert.deepEqual(settings.thresholds, { 'std-floor': 0.05 });
    });

    it('treats missing settings as empty', () => {
        assert.deepEqual(readCheckerSettings(configWith({})), { select: [], ignore: [], severity: {}, thresholds: {} });
    });
});

describe('buildInitializationOptions', () => {
    it('omits an empty select so the project configuration applies', () => {
        const options = buildInitializationOptions({ select: [], ignore: [], severity: {}, thresholds: {} });
        assert.equal('select' in options, false);
        assert.deepEqual(options.ignore, []);
    });

    it('passes a non-empty select', () => {
        const options = buildInitializationOptions({ select: ['GS1'], ignore: [], severity: {}, thresholds: {} });
        assert.deepEqual(options.select, ['GS1']);
    });
});
