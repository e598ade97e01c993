/** Small statistics and table helpers for the benchmark (no dependencies). */

/** Linear-interpolated quantile (q in 0..1) of unsorted samples; NaN for none. */
export function quantile(samples: readonly number[], q: number): number {
  if (samples.length === 0) return NaN;
  const s = [...samples].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = s[lo] ?? NaN;
  const b = s[hi] ?? NaN;
  return a + (b - a) * (pos - lo);
}

export const median = (xs: readonly number[]): number => quantile(xs, 0.5);

/** A figure: the median of repeated runs, and how far the runs spread. */
export interface Summary {
  median: number;
  /** p25..p75 when there are at least 8 runs, else min..max. */
  lo: number;
  hi: number;
  spreadKind: 'p25-p75' | 'min-max';
  runs: number;
}

export function summarize(xs: readonly number[]): Summary {
  const wide = xs.length >= 8;
  return {
    median: median(xs),
    lo: wide ? quantile(xs, 0.25) : Math.min(...xs),
    hi: wide ? quantile(xs, 0.75) : Math.max(...xs),
    spreadKind: wide ? 'p25-p75' : 'min-max',
    runs: xs.length,
  };
}

/** One row of the results table (and of bench-results.json). */
export interface Row {
  id: string;
  figure: string;
  unit: string;
  /** undefined: not measured (see `note`). */
  value?: Summary;
  /** The reference measured in the same run (or a fixed limit), when the figure has one. */
  reference?: { label: string; value: number };
  /** value / reference (or value − reference when `ratioKind` is `diff`). */
  ratio?: number;
  ratioKind?: 'ratio' | 'diff';
  /** Human-readable target, e.g. "≤ 5 ms". */
  target?: string;
  /** Whether the target is met; undefined when there is no target or no value. */
  met?: boolean;
  note?: string;
}

export function fmt(n: number | undefined, unit = ''): string {
  if (n === undefined || Number.isNaN(n)) return '—';
  const abs = Math.abs(n);
  const digits = abs >= 1000 ? 0 : abs >= 100 ? 1 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  const s = n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  return unit ? `${s} ${unit}` : s;
}

function cell(row: Row): string[] {
  const v = row.value;
  const val = v ? fmt(v.median, row.unit) : 'not yet measured';
  const spread = v ? (v.runs > 1 ? `${fmt(v.lo)}–${fmt(v.hi)} (${v.spreadKind === 'p25-p75' ? 'p25–p75' : 'min–max'}, n=${v.runs})` : `n=1`) : '';
  const ref = row.reference ? `${row.reference.label} ${fmt(row.reference.value, row.unit)}` : '';
  const ratio = row.ratio === undefined || Number.isNaN(row.ratio) ? '' : row.ratioKind === 'diff' ? `${row.ratio >= 0 ? '+' : ''}${fmt(row.ratio, row.unit)}` : `${fmt(row.ratio)}×`;
  const ok = row.met === undefined ? '' : row.met ? '✓' : '✗';
  return [row.id, row.figure, val, spread, ref, ratio, row.target ?? '', ok];
}

/** A plain-text table, columns padded to their widest cell. */
export function renderTable(rows: readonly Row[]): string {
  const head = ['#', 'figure', 'median', 'spread', 'reference', 'ratio', 'target', ''];
  const body = rows.map(cell);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  const sep = widths.map((w) => '-'.repeat(w)).join('  ');
  const notes = rows.filter((r) => r.note).map((r) => `  [${r.id}] ${r.note}`);
  return [line(head), sep, ...body.map(line), ...(notes.length ? ['', 'Notes:', ...notes] : [])].join('\n');
}
