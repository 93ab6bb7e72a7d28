// Hand-made SVG bar charts: no library, no network. Each chart has a title
// and a text description for screen readers, and the numbers are also in a
// table next to it.
import { h } from './ui.js';

const NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const k of kids) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return el;
}

// Dates show as MM-DD; other labels (model names) are cut to fit.
const short = l => /^\d{4}-\d\d-\d\d$/.test(l) ? l.slice(5) : l.length > 18 ? l.slice(0, 17) + '…' : l;

/**
 * A stacked bar chart. labels: x labels; series: [{name, values[]}];
 * fmt formats a value for the axis and tooltips; floor is the least axis
 * top (money charts use a cent, so an empty chart does not read $0.000001).
 */
export function barChart(title, labels, series, fmt = String, floor = 1) {
  const W = 640, H = 220, L = 56, B = 28, T = 10;
  const totals = labels.map((_, i) => series.reduce((a, sr) => a + (sr.values[i] || 0), 0));
  // A round top for the axis (1, 2 or 5 × 10^n) so the ticks read cleanly.
  const raw = Math.max(floor, ...totals);
  const p10 = 10 ** Math.floor(Math.log10(raw));
  const max = [1, 2, 5, 10].map(m => m * p10).find(m => m >= raw);
  const bw = (W - L - 8) / Math.max(labels.length, 1);
  const id = 'c' + Math.random().toString(36).slice(2);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-labelledby': id + 't ' + id + 'd' },
    s('title', { id: id + 't' }, title),
    s('desc', { id: id + 'd' }, labels.map((l, i) => `${l}: ${fmt(totals[i])}`).join('; ')));
  for (const f of (max * 0.5) % 1 === 0 ? [0, 0.5, 1] : [0, 1]) {
    const y = T + (H - T - B) * (1 - f);
    svg.append(s('line', { x1: L, x2: W, y1: y, y2: y, class: 'axis' }),
      s('text', { x: L - 6, y: y + 4, 'text-anchor': 'end' }, fmt(Math.round(max * f))));
  }
  const every = Math.ceil(labels.length / 10);
  labels.forEach((l, i) => {
    let y = H - B;
    series.forEach((sr, k) => {
      const v = sr.values[i] || 0;
      const bh = (H - T - B) * v / max;
      y -= bh;
      if (v > 0) svg.append(s('rect', { x: L + i * bw + bw * 0.15, y, width: Math.max(bw * 0.7, 1), height: bh, class: `bar s${k % 4}` },
        s('title', {}, `${l} ${sr.name}: ${fmt(v)}`)));
    });
    if (i % every === 0) svg.append(s('text', { x: L + i * bw + bw / 2, y: H - 8, 'text-anchor': 'middle' }, short(l)));
  });
  const legend = series.length > 1
    ? h('ul', { class: 'legend' }, series.map((sr, k) => h('li', {}, h('span', { class: `sw s${k % 4}`, 'aria-hidden': 'true' }), sr.name)))
    : null;
  return h('figure', { class: 'card' }, h('figcaption', {}, h('strong', {}, title)), legend, svg);
}
