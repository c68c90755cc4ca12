// Draws the Gradient Flow chart in the webview: one row per layer with three horizontal bars on a log scale
// (mean |grad|, max |grad|, update-to-weight ratio). The data comes from the JSON element that
// extension/src/gradients/chart.ts writes into the page. Every string from it is written with textContent or
// setAttribute, never parsed as HTML.
(function () {
    'use strict';

    const SVG_NS = 'http://www.w3.org/2000/svg';
    const vscode = acquireVsCodeApi();

    const SERIES = [
        { key: 'meanAbsGrad', label: 'mean |grad|', className: 'bar-mean' },
        { key: 'maxAbsGrad', label: 'max |grad|', className: 'bar-max' },
        { key: 'updateRatio', label: 'update/weight ratio', className: 'bar-update' },
    ];

    const LAYOUT = {
        minLabelWidth: 80,
        maxLabelWidth: 280,
        rightMargin: 70,
        top: 28,
        barHeight: 9,
        barGap: 2,
        rowGap: 12,
        minPlotWidth: 200,
        minTickSpacing: 46,
        maxLabelChars: 40,
    };

    function readData() {
        const element = document.getElementById('gradient-flow-data');
        try {
            return JSON.parse(element ? element.textContent : 'null');
        } catch (error) {
            return null;
        }
    }

    function svgElement(name, attributes) {
        const element = document.createElementNS(SVG_NS, name);
        for (const [key, value] of Object.entries(attributes || {})) {
            element.setAttribute(key, String(value));
        }
        return element;
    }

    function svgText(text, attributes) {
        const element = svgElement('text', attributes);
        element.textContent = text;
        return element;
    }

    function addTitle(element, text) {
        const title = svgElement('title');
        title.textContent = text;
        element.appendChild(title);
    }

    // Same rules as formatMeasurement in extension/src/gradients/format.ts.
    function formatNumber(value) {
        if (value === null || value === undefined) {
            return 'n/a';
        }
        if (value === 0) {
            return '0';
        }
        const magnitude = Math.abs(value);
        if (magnitude >= 1e-3 && magnitude < 1e4) {
            return String(Number(value.toPrecision(3)));
        }
        return value.toExponential(2).replace(/\.?0+e/, 'e').replace('e+', 'e');
    }

    // Width in pixels of the widest row label as the chart draws it (the name at 12px and the status below it at
    // 10px, in the editor font), within limits.
    function measureLabelWidth(layers) {
        const context = document.createElement('canvas').getContext('2d');
        const fontFamily = getComputedStyle(document.body).fontFamily;
        let widest = 0;
        if (context) {
            for (const layer of layers) {
                context.font = '12px ' + fontFamily;
                widest = Math.max(widest, context.measureText(truncate(layer.name, LAYOUT.maxLabelChars)).width);
                context.font = '10px ' + fontFamily;
                widest = Math.max(widest, context.measureText(layer.status).width);
            }
        }
        return Math.min(LAYOUT.maxLabelWidth, Math.max(LAYOUT.minLabelWidth, Math.ceil(widest) + 16));
    }

    function truncate(text, maxChars) {
        return text.length > maxChars ? '…' + text.slice(text.length - maxChars + 1) : text;
    }

    // Powers of ten that enclose every positive value and the reference lines.
    function logDomain(data) {
        let min = Math.min(data.thresholds.tinyUpdate, data.thresholds.typicalUpdate);
        let max = Math.max(data.thresholds.tinyUpdate, data.thresholds.typicalUpdate);
        for (const layer of data.layers) {
            for (const series of SERIES) {
                const value = layer[series.key];
                if (typeof value === 'number' && value > 0) {
                    min = Math.min(min, value);
                    max = Math.max(max, value);
                }
            }
        }
        const low = Math.floor(Math.log10(min));
        let high = Math.ceil(Math.log10(max));
        if (high === low) {
            high = low + 1;
        }
        return { low, high };
    }

    function renderLegend(container) {
        container.replaceChildren();
        for (const series of SERIES) {
            const item = document.createElement('span');
            item.className = 'legend-item';
            const swatch = svgElement('svg', { width: 12, height: 12, 'aria-hidden': 'true' });
            swatch.appendChild(svgElement('rect', { width: 12, height: 12, class: series.className }));
            item.appendChild(swatch);
            const label = document.createElement('span');
            label.textContent = series.label;
            item.appendChild(label);
            container.appendChild(item);
        }
        const reference = document.createElement('span');
        reference.className = 'legend-item';
        reference.textContent = 'dashed lines: update/weight 1e-7 (too small) and 1e-3 (typical)';
        container.appendChild(reference);
    }

    function openLayer(index) {
        vscode.postMessage({ type: 'openLayer', index });
    }

    function renderAxis(svg, scale, domain, plotLeft, plotWidth, height) {
        const span = domain.high - domain.low;
        // Label every power of ten that fits, at least minTickSpacing pixels apart.
        const maxTicks = Math.max(1, Math.floor(plotWidth / LAYOUT.minTickSpacing));
        const step = Math.max(1, Math.ceil(span / maxTicks));
        for (let exponent = domain.low; exponent <= domain.high; exponent += step) {
            const x = scale(Math.pow(10, exponent));
            svg.appendChild(svgElement('line', { x1: x, x2: x, y1: LAYOUT.top - 6, y2: height, class: 'grid' }));
            svg.appendChild(svgText('1e' + exponent, { x, y: LAYOUT.top - 10, class: 'tick', 'text-anchor': 'middle' }));
        }
        svg.appendChild(svgElement('line', { x1: plotLeft, x2: plotLeft, y1: LAYOUT.top - 6, y2: height, class: 'axis' }));
    }

    function renderThreshold(svg, scale, value, label, height) {
        const x = scale(value);
        const line = svgElement('line', { x1: x, x2: x, y1: LAYOUT.top - 6, y2: height, class: 'threshold' });
        addTitle(line, label);
        svg.appendChild(line);
    }

    function renderRow(svg, layer, index, y, scale, plotLeft) {
        const labelRight = plotLeft - 8;
        const row = svgElement('g', { class: 'row severity-' + layer.severity, 'data-layer-index': index });
        const rowHeight = SERIES.length * (LAYOUT.barHeight + LAYOUT.barGap);
        row.appendChild(svgElement('rect', { x: 0, y: y - 3, width: '100%', height: rowHeight + 6, class: 'row-background' }));

        row.appendChild(svgText(truncate(layer.name, LAYOUT.maxLabelChars), { x: labelRight, y: y + 10, class: 'layer-name', 'text-anchor': 'end' }));
        row.appendChild(svgText(layer.status, { x: labelRight, y: y + 24, class: 'layer-status', 'text-anchor': 'end' }));
        addTitle(row, layer.name + ': ' + layer.status + (layer.hasLocation ? ' (click to open its definition)' : ''));

        SERIES.forEach((series, seriesIndex) => {
            const barY = y + seriesIndex * (LAYOUT.barHeight + LAYOUT.barGap);
            const value = layer[series.key];
            const valueText = series.label + ' = ' + (layer.nonFinite && value === null ? 'NaN or Inf' : formatNumber(value));
            if (typeof value === 'number' && value > 0) {
                const width = Math.max(1, scale(value) - plotLeft);
                const bar = svgElement('rect', { x: plotLeft, y: barY, width, height: LAYOUT.barHeight, class: 'bar ' + series.className });
                addTitle(bar, layer.name + ': ' + valueText);
                row.appendChild(bar);
                row.appendChild(svgText(formatNumber(value), { x: plotLeft + width + 4, y: barY + LAYOUT.barHeight - 1, class: 'bar-value' }));
            } else {
                // Zero, missing and non-finite values have no place on a log scale, so they are written out.
                const marker = svgText(layer.nonFinite && value === null ? 'NaN/Inf' : formatNumber(value), {
                    x: plotLeft + 4,
                    y: barY + LAYOUT.barHeight - 1,
                    class: 'bar-missing',
                });
                addTitle(marker, layer.name + ': ' + valueText);
                row.appendChild(marker);
            }
        });

        if (layer.hasLocation) {
            row.classList.add('clickable');
            row.setAttribute('tabindex', '0');
            row.setAttribute('role', 'button');
            row.setAttribute('aria-label', 'Open the definition of layer ' + layer.name + ', status ' + layer.status);
            row.addEventListener('click', () => openLayer(index));
            row.addEventListener('keydown', (event) => {
                if (event.key === 'Enter' || event.key === ' ') {
                    event.preventDefault();
                    openLayer(index);
                }
            });
        }
        svg.appendChild(row);
        return rowHeight + LAYOUT.rowGap;
    }

    function renderChart(container, data) {
        container.replaceChildren();
        const plotLeft = measureLabelWidth(data.layers);
        const width = Math.max(container.clientWidth, plotLeft + LAYOUT.minPlotWidth + LAYOUT.rightMargin);
        const plotWidth = width - plotLeft - LAYOUT.rightMargin;
        const rowHeight = SERIES.length * (LAYOUT.barHeight + LAYOUT.barGap) + LAYOUT.rowGap;
        const height = LAYOUT.top + data.layers.length * rowHeight;

        const domain = logDomain(data);
        const scale = (value) => plotLeft + ((Math.log10(value) - domain.low) / (domain.high - domain.low)) * plotWidth;

        const svg = svgElement('svg', { width, height, role: 'img', class: 'gradient-flow' });
        svg.setAttribute('aria-label', 'Gradient magnitudes and update-to-weight ratios of ' + data.layers.length + ' layers, log scale');
        renderAxis(svg, scale, domain, plotLeft, plotWidth, height);
        renderThreshold(svg, scale, data.thresholds.tinyUpdate, 'update/weight ratio 1e-7: below it the weights barely move', height);
        renderThreshold(svg, scale, data.thresholds.typicalUpdate, 'update/weight ratio 1e-3: typical of healthy training', height);

        let y = LAYOUT.top;
        data.layers.forEach((layer, index) => {
            y += renderRow(svg, layer, index, y, scale, plotLeft);
        });
        container.appendChild(svg);
    }

    function render() {
        const data = readData();
        const title = document.getElementById('title');
        const subtitle = document.getElementById('subtitle');
        const legend = document.getElementById('legend');
        const chart = document.getElementById('chart');
        const empty = document.getElementById('empty');

        const hasLayers = data !== null && Array.isArray(data.layers) && data.layers.length > 0;
        title.textContent = data ? data.title : 'Gradient Flow';
        subtitle.textContent = data ? data.subtitle : '';
        empty.hidden = hasLayers;
        if (!hasLayers) {
            legend.replaceChildren();
            chart.replaceChildren();
            return;
        }
        renderLegend(legend);
        renderChart(chart, data);
    }

    let resizeTimer;
    window.addEventListener('resize', () => {
        clearTimeout(resizeTimer);
        resizeTimer = setTimeout(render, 100);
    });
    render();
})();
