/** Parsed command-line values, and the helpers every command uses. */
export type Values = Record<string, string | boolean | undefined>;

/** A string option, or undefined. */
export function str(v: Values, k: string): string | undefined {
  const x = v[k];
  return typeof x === 'string' ? x : undefined;
}

/** Columns padded to their widest cell. */
export function table(rows: (string | number)[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** Writes a usage line and returns the exit status for a usage error (EX_USAGE). */
export function usage(text: string): number {
  process.stderr.write(`${text}\n`);
  return 64;
}
