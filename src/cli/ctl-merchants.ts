/** `notifyd ctl merchants …`: the merchant registry through the admin API. */
import type { AdminCall } from './admin-client.js';
import { printAnswer } from './admin-client.js';
import { str, table, usage, type Values } from './args.js';

const USAGE = `notifyd ctl merchants list [--cursor ID] [--limit N] [--json]
notifyd ctl merchants add ID --name NAME --origins https://a.example[,https://b.example]
                          [--signing standard|rsa2|none] [--max-concurrency N] [--max-attempts N]
notifyd ctl merchants show ID
notifyd ctl merchants rotate ID [--grace 24h]
notifyd ctl merchants enable ID
notifyd ctl merchants disable ID [--reason TEXT]`;

interface MerchantShape {
  id: string;
  name: string;
  enabled: boolean;
  signing: string;
  allowedOrigins: string[];
  maxConcurrency: number | null;
  maxAttempts: number | null;
  disabledReason: string | null;
  failingSince: string | null;
  secrets: { fingerprint: string; expiresAt: string | null }[];
}

const path = (id: string, action = ''): string => `/admin/merchants/${encodeURIComponent(id)}${action}`;

/**
 * Prints an answer that carries a new secret: the secret on its own line, and
 * the reminder that it is shown once; with `--json` the answer as it came (a
 * script reads `.secret`).
 */
function withSecret(r: { status: number; body: unknown }, json: boolean): number {
  const b = r.body as { merchant?: MerchantShape; secret?: string | null };
  if (json || r.status >= 400 || !b.merchant) return printAnswer(r);
  process.stdout.write(`${JSON.stringify(b.merchant, null, 2)}\n`);
  if (b.secret) process.stdout.write(`\nsigning secret (shown once; give it to the merchant now):\n${b.secret}\n`);
  return 0;
}

export async function merchantsCommand(args: string[], values: Values, call: AdminCall): Promise<number> {
  const [cmd, id] = args;
  const need = (): string | null => (id && !id.startsWith('-') ? id : null);
  switch (cmd) {
    case 'list': {
      const q = new URLSearchParams({ limit: str(values, 'limit') ?? '50' });
      const cursor = str(values, 'cursor');
      if (cursor) q.set('cursor', cursor);
      const r = await call('GET', `/admin/merchants?${q}`);
      if (r.status !== 200 || values.json) return printAnswer(r);
      const { merchants, nextCursor } = r.body as { merchants: MerchantShape[]; nextCursor: string | null };
      const rows: (string | number)[][] = [['ID', 'NAME', 'ENABLED', 'SIGNING', 'ORIGINS', 'SECRETS', 'FAILING SINCE']];
      for (const m of merchants) rows.push([m.id, m.name, m.enabled ? 'yes' : `no (${m.disabledReason ?? ''})`, m.signing, m.allowedOrigins.join(' '), m.secrets.map((s) => s.fingerprint).join(' ') || '-', m.failingSince ?? '-']);
      process.stdout.write(`${merchants.length ? table(rows) : '(no merchants)'}\n${nextCursor ? `more: --cursor ${nextCursor}\n` : ''}`);
      return 0;
    }
    case 'add': {
      const mid = need();
      const name = str(values, 'name');
      const origins = str(values, 'origins');
      if (!mid || !name || !origins) return usage(USAGE);
      const body: Record<string, unknown> = { id: mid, name, allowedOrigins: origins.split(',').map((s) => s.trim()).filter(Boolean) };
      if (str(values, 'signing')) body.signing = str(values, 'signing');
      // A whole number as typed, or a usage error: Number('abc') is NaN, which JSON sends as null ("no limit").
      for (const [flag, field] of [['max-concurrency', 'maxConcurrency'], ['max-attempts', 'maxAttempts']] as const) {
        const v = str(values, flag);
        if (v === undefined || v === '') continue;
        if (!/^\d{1,9}$/.test(v)) return usage(`--${flag}: a whole number (got ${JSON.stringify(v)})\n${USAGE}`);
        body[field] = Number(v);
      }
      return withSecret(await call('POST', '/admin/merchants', body), values.json === true);
    }
    case 'show': {
      const mid = need();
      return mid ? printAnswer(await call('GET', path(mid))) : usage(USAGE);
    }
    case 'rotate': {
      const mid = need();
      if (!mid) return usage(USAGE);
      const grace = str(values, 'grace');
      return withSecret(await call('POST', path(mid, '/rotate-secret'), grace ? { grace } : {}), values.json === true);
    }
    case 'enable':
    case 'disable': {
      const mid = need();
      if (!mid) return usage(USAGE);
      const reason = str(values, 'reason');
      return printAnswer(await call('POST', path(mid, `/${cmd}`), reason ? { reason } : {}));
    }
    default:
      return usage(USAGE);
  }
}
