/**
 * Settings that start fine and hurt later, said once at start-up.
 */
import { MIN_TOKEN_LENGTH, weakAdminToken } from '../core/config-model.js';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type { Config } from '../core/config.js';

/** What the master knows of its surroundings. */
export interface StartupContext {
  /** How long the service manager waits after SIGTERM before SIGKILL, when known. */
  readonly stopTimeoutMs: number | null;
}

/** The master needs this long after the drain deadline: stragglers are killed 2 s after it, then it closes and exits. */
const EXIT_MARGIN_MS = 5_000;

/** Pure: one line per setting that will hurt. */
export function startupWarnings(config: Config, ctx: StartupContext): string[] {
  const out: string[] = [];
  if (config.queueType === 'classic') {
    out.push(
      'queueType is classic: dead-lettering from a classic queue is at-most-once, so every retry hop can lose a notification if the broker fails at the wrong moment; use quorum (the default) for payment callbacks',
    );
  }
  out.push(...reloadWarnings(config, ctx));
  return out;
}

/**
 * Pure: the warnings a configuration reload can bring about, as at start (a
 * token set by the reload is as weak as one set at start; a drain timeout
 * raised by it is cut by the service manager as one set at start).
 */
export function reloadWarnings(config: Config, ctx: StartupContext): string[] {
  const out: string[] = [];
  if (ctx.stopTimeoutMs !== null && config.supervisor.drainTimeoutMs + EXIT_MARGIN_MS > ctx.stopTimeoutMs) {
    out.push(
      `supervisor.drainTimeout (${config.supervisor.drainTimeoutMs} ms) plus ${EXIT_MARGIN_MS} ms to exit is longer than the service manager waits after SIGTERM (${ctx.stopTimeoutMs} ms, TimeoutStopSec): a drain would be cut short by SIGKILL, repeating the attempts in flight; raise TimeoutStopSec or lower the drain timeout`,
    );
  }
  if (config.admin.token !== null && weakAdminToken(config.admin.token)) {
    out.push(`admin.token is shorter than ${MIN_TOKEN_LENGTH} characters or holds spaces: guessable by anyone on this machine, and refused if admin.host is ever not loopback; use e.g. openssl rand -hex 24`);
  }
  return out;
}

/**
 * Pure: a systemd time span as a unit file writes it (`40s`, `1min 30s`,
 * `1.5m`, `infinity`; a bare number is seconds) in ms; null when unreadable
 * or infinite. `systemctl show` prints `TimeoutStopUSec` with units too
 * (`40s`, `1min 30s`).
 */
export function parseSystemdTimespan(text: string): number | null {
  const t = text.trim();
  if (t === '' || t === 'infinity') return null;
  if (/^\d+$/.test(t)) return Number(t) * 1000; // plain seconds, as in unit files
  const units: Record<string, number> = { us: 0.001, ms: 1, s: 1000, sec: 1000, m: 60_000, min: 60_000, h: 3_600_000, hr: 3_600_000, d: 86_400_000 };
  let total = 0;
  for (const part of t.split(/\s+/)) {
    const m = /^(\d+(?:\.\d+)?)(us|ms|s|sec|m|min|h|hr|d)$/.exec(part);
    if (!m) return null;
    total += Number(m[1]) * units[m[2]!]!;
  }
  return Math.round(total);
}

/**
 * How long the service manager waits after SIGTERM: `NOTIFY_STOP_TIMEOUT`
 * (the shipped unit sets it next to `TimeoutStopSec`), else, under systemd,
 * what `systemctl show` says of the unit this process runs in. Null when
 * neither is known.
 */
export async function stopTimeoutMs(env: NodeJS.ProcessEnv): Promise<number | null> {
  if (env.NOTIFY_STOP_TIMEOUT) {
    // Read as the unit file's TimeoutStopSec it mirrors: a bare 40 is seconds there, not notifyd's milliseconds.
    return parseSystemdTimespan(env.NOTIFY_STOP_TIMEOUT);
  }
  if (!env.INVOCATION_ID) return null;
  const cgroup = await readFile('/proc/self/cgroup', 'utf8').catch(() => '');
  const unit = /([^/\s]+\.service)/.exec(cgroup)?.[1];
  if (!unit) return null;
  return new Promise((resolve) => {
    execFile('systemctl', ['show', unit, '--property=TimeoutStopUSec', '--value'], { timeout: 2000 }, (err, stdout) => {
      resolve(err ? null : parseSystemdTimespan(stdout));
    });
  });
}
