/**
 * Imported first by the process entries (before any other module loads), so
 * a SIGHUP in the second or so their imports take does not end the process
 * with the signal's default action: `systemctl kill -s HUP` reaches the whole
 * group, a worker starting after a crash included, and a `systemctl reload`
 * can follow a `systemctl start` at once (the unit is `Type=simple`).
 * Workers ignore it for good; the master (`notifyd start`) holds it until
 * it can reload ({@link takeEarlyHangup}).
 */
import cluster from 'node:cluster';

let pending = false;
const hold = (): void => {
  pending = true;
};
/** The command of a `notifyd` command line: its first word that is neither an option nor `--config`'s value. */
export function commandOf(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--config') i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

// Only in the daemon's processes: the other commands (ctl, publish, …) keep the default, a hangup ends them.
if (cluster.isWorker || commandOf(process.argv.slice(2)) === 'start') process.on('SIGHUP', hold);

/**
 * Stops holding SIGHUP (the caller installs its own handler first) and says
 * whether one arrived while it was held.
 */
export function takeEarlyHangup(): boolean {
  process.off('SIGHUP', hold);
  const was = pending;
  pending = false;
  return was;
}
