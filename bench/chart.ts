/**
 * A dependency-free horizontal bar chart (SVG) of a bench report: one bar per
 * case, coloured by implementation, with the openssl single-core figure drawn
 * as a reference line when present.
 */
import { formatSize } from './measure.js';
import type { BenchReport } from './types.js';

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

export function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function renderChart(r: BenchReport, reference?: { label: string; bytesPerSecond: number }): string {
  // Cases without a byte rate (e.g. policy decisions) have no bar.
  const cases = r.cases.filter((c) => c.bytesPerSecond > 0);
  const impls = [...new Set(cases.map((c) => c.impl))];
  const colour = (impl: string) => PALETTE[impls.indexOf(impl) % PALETTE.length]!;
  const labelW = 330;
  const barW = 520;
  const rowH = 18;
  const top = 50;
  const legendH = 20 * Math.ceil(impls.length / 3);
  const max = Math.max(1, reference?.bytesPerSecond ?? 0, ...cases.map((c) => c.bytesPerSecond));
  const x = (bps: number) => labelW + (bps / max) * barW;
  const height = top + cases.length * rowH + 40 + legendH;
  const width = labelW + barW + 110;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${escapeXml(
      `membrane bench ${r.suite}${r.quick ? ' (quick)' : ''} — MB/s, median`,
    )}</text>`,
    `<text x="10" y="38" fill="#555">${escapeXml(
      `${r.machine.cpus} CPU(s) ${r.machine.model}, node ${r.machine.node}, ${r.startedAt}`,
    )}</text>`,
  ];
  cases.forEach((c, i) => {
    const y = top + i * rowH;
    const label = `${c.impl} ${c.op} ${formatSize(c.frameBytes)} x${c.threads}`;
    out.push(
      `<text x="${labelW - 6}" y="${y + 12}" text-anchor="end">${escapeXml(label)}</text>`,
      `<rect x="${labelW}" y="${y + 2}" width="${(x(c.bytesPerSecond) - labelW).toFixed(1)}" height="${rowH - 4}" fill="${colour(c.impl)}"/>`,
      `<text x="${(x(c.bytesPerSecond) + 4).toFixed(1)}" y="${y + 12}">${(c.bytesPerSecond / 1e6).toFixed(0)}</text>`,
    );
  });
  const bottom = top + cases.length * rowH;
  if (reference) {
    const rx = x(reference.bytesPerSecond).toFixed(1);
    out.push(
      `<line x1="${rx}" y1="${top - 4}" x2="${rx}" y2="${bottom + 4}" stroke="black" stroke-dasharray="4 3"/>`,
      `<text x="${rx}" y="${bottom + 16}" text-anchor="middle">${escapeXml(reference.label)}</text>`,
    );
  }
  impls.forEach((impl, i) => {
    const lx = 10 + (i % 3) * 290;
    const ly = bottom + 32 + Math.floor(i / 3) * 20;
    out.push(
      `<rect x="${lx}" y="${ly}" width="12" height="12" fill="${colour(impl)}"/>`,
      `<text x="${lx + 18}" y="${ly + 10}">${escapeXml(impl)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
