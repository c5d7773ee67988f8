// The `notifyd` command, loaded by its entry (src/cli.ts) once SIGHUP is held there.
import { parseArgs } from 'node:util';
import { NotifyClient } from '../client.js';
import { toErrorData } from '../core/errors.js';
import { loadConfigOrExit, runMaster } from '../supervisor/master.js';
import { exitStatusFor, str, usage, type Values } from './args.js';
import { CTL_USAGE, ctl } from './ctl.js';
import { migrateCommand } from './migrate.js';
import { secretsCommand } from './secrets.js';

const USAGE = `notifyd — tiered HTTP notification delivery on RabbitMQ

  notifyd start [--config FILE]                 run the daemon (master + workers)
  notifyd publish --url URL --body JSON [--id ID] [--merchant M] [--config FILE]
                                                publish one notification (waits for the broker's confirm);
                                                exit 65 for invalid input, 75 when the broker could not
                                                take it (retry with the id it printed)
  notifyd migrate [--config FILE]               bring the database up to date (the master also does it at start)
  notifyd secrets seal [--config FILE]          seal merchant secrets stored in plaintext with NOTIFY_SECRETS_KEY
                                                (once every daemon has the key)
  notifyd config check [--config FILE]          list every problem of a configuration (exit 78 when invalid);
                                                its JSON Schema is docs/config.schema.json
  notifyd ctl …                                 talk to a running daemon's admin API:
${CTL_USAGE.replace(/^/gm, '    ')}

Configuration: config/default.json, --config FILE / NOTIFY_CONFIG, NOTIFY_* variables (see README).`;

/** Options each command takes besides `--help`; `ctl`'s subcommands share the rest. */
const COMMAND_OPTIONS: Readonly<Record<string, readonly string[]>> = {
  start: ['config'],
  publish: ['config', 'url', 'body', 'id', 'merchant'],
  migrate: ['config'],
  secrets: ['config'],
  config: ['config'],
};

/** An option given to a command that would ignore it (`publish --admin …`), or null. */
function foreignOption(command: string, values: Values): string | null {
  const allowed = COMMAND_OPTIONS[command];
  if (allowed === undefined) return null;
  return Object.keys(values).find((k) => k !== 'help' && values[k] !== undefined && !allowed.includes(k)) ?? null;
}

async function publish(values: Values): Promise<number> {
  // Publishing never signs: a producer needs neither the signing secrets nor the key file.
  const config = loadConfigOrExit(str(values, 'config') ?? null, { checkSigning: false });
  const url = str(values, 'url');
  const bodyText = str(values, 'body');
  if (!url || bodyText === undefined) {
    process.stderr.write('notifyd publish: --url and --body are required\n');
    return 64;
  }
  let body: unknown = bodyText;
  try {
    body = JSON.parse(bodyText);
  } catch {
    /* not JSON: sent as the raw string */
  }
  const client = new NotifyClient({ amqpUrl: config.amqpUrl, prefix: config.prefix, initialDelayMs: config.scheduleMs[0] ?? 0, limits: config.limits });
  try {
    const id = str(values, 'id');
    const merchant = str(values, 'merchant');
    const r = await client.publish({ url, body, ...(id ? { id } : {}), ...(merchant ? { merchant } : {}) });
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return 0;
  } catch (err) {
    const error = toErrorData(err);
    // The id it was published under (made here when none was given): the broker may have taken it all the
    // same (a confirm that timed out), so a retry must reuse it for the merchant to see one notification.
    const id = (err as { id?: unknown }).id;
    process.stderr.write(`notifyd publish: ${JSON.stringify({ error, ...(typeof id === 'string' ? { id } : {}) })}\n`);
    return exitStatusFor(error.code);
  } finally {
    await client.close();
  }
}

/** The command line as `parseArgs` reads it (throws `ERR_PARSE_ARGS_*` on an unknown option). */
function parseCommandLine(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      url: { type: 'string' },
      body: { type: 'string' },
      id: { type: 'string' },
      admin: { type: 'string' },
      token: { type: 'string' },
      limit: { type: 'string' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
      name: { type: 'string' },
      origins: { type: 'string' },
      signing: { type: 'string' },
      'max-concurrency': { type: 'string' },
      'max-attempts': { type: 'string' },
      grace: { type: 'string' },
      reason: { type: 'string' },
      cursor: { type: 'string' },
      merchant: { type: 'string' },
      status: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine(argv);
  } catch (err) {
    // An unknown option or a missing value is a usage error (EX_USAGE), like an unknown command.
    if (String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_')) return usage(`notifyd: ${(err as Error).message}\n${USAGE}`);
    throw err;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    return values.help ? 0 : 64;
  }
  const foreign = foreignOption(command, values);
  if (foreign !== null) return usage(`notifyd ${command}: --${foreign} is not one of its options\n${USAGE}`);
  switch (command) {
    case 'start':
      await runMaster(str(values, 'config') ?? null);
      return -1;
    case 'publish':
      return publish(values);
    case 'ctl':
      return ctl(rest, values);
    case 'migrate':
      return migrateCommand(values);
    case 'secrets':
      return secretsCommand(rest, values);
    case 'config':
      if (rest[0] !== 'check') return usage('usage: notifyd config check [--config FILE]');
      // Imported here: its schema builders (TypeBox) would weigh on the master that `start` runs.
      return (await import('./config-check.js')).configCheck(str(values, 'config') ?? null);
    default:
      process.stderr.write(`unknown command ${command}\n${USAGE}\n`);
      return 64;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    const data = toErrorData(err);
    process.stderr.write(`notifyd: ${data.message} (${data.code})\n`);
    process.exit(exitStatusFor(data.code));
  },
);
