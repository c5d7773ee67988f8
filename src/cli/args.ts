/** Parsed command-line values, and the helpers every command uses. */
import { EX_CONFIG } from '../core/config.js';
import { ErrorCodes, type ErrorCode } from '../core/errors.js';

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

/**
 * The exit status for an error a command met (sysexits): 65 for invalid
 * input; 69 when the admin API could not be reached (nothing was sent); 75
 * when the admin API's answer never came (it may have happened: check before
 * retrying) or the broker could not take a publish now (retry with the same
 * id); 78 for an invalid configuration; else 1.
 */
export function exitStatusFor(code: ErrorCode): number {
  switch (code) {
    case ErrorCodes.VALIDATION:
      return 65;
    case ErrorCodes.ADMIN_UNREACHABLE:
      return 69;
    case ErrorCodes.REQUEST_TIMEOUT:
    case ErrorCodes.ADMIN_CONNECTION_LOST:
    case ErrorCodes.BROKER_UNAVAILABLE:
    case ErrorCodes.BROKER_BLOCKED:
    case ErrorCodes.BROKER_NACK:
    case ErrorCodes.BROKER_CONFIRM_TIMEOUT:
    case ErrorCodes.OVERLOADED:
      return 75;
    case ErrorCodes.CONFIG_INVALID:
      return EX_CONFIG;
    default:
      return 1;
  }
}
