// Registered merchants (DESIGN §10): list, create (the new secret shown
// once), rotate the secret, enable/disable. Needs the database.
import { useState } from 'preact/hooks';
import { MERCHANTS_LISTED, createMerchant, isDisabled, isMissingEndpoint, listMerchants, rotateMerchantSecret, setMerchantEnabled, type Merchant, type MerchantWithSecret } from '../api';
import { ErrorNotice, Live, Section, StateBadge } from '../components';
import * as f from '../format';
import { usePoll } from '../use-poll';
import { NeedsDatabase } from './needs-database';

/** Origins typed one per line or comma-separated. */
function parseOrigins(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** The secret of a create or rotate, shown this once. */
function SecretOnce({ shown, onDone }: { shown: MerchantWithSecret; onDone: () => void }) {
  return (
    <section class="notice notice-warn secret" aria-labelledby="secret-title">
      <h2 id="secret-title">Signing secret for {shown.merchant.id}</h2>
      <p>
        Copy it now and give it to the merchant: <strong>it is not shown again</strong> (afterwards only its fingerprint is).
      </p>
      <label for="secret-value">Secret</label>
      <input id="secret-value" class="secret-value" type="text" readOnly value={shown.secret} onFocus={(e) => (e.target as HTMLInputElement).select()} />
      <p>
        <button type="button" class="btn" onClick={onDone}>
          I have stored it
        </button>
      </p>
    </section>
  );
}

/** How often the list is read again: an action is taken on the row as shown, so it must not be far behind. */
const LIST_EVERY_MS = 15_000;

export function Merchants() {
  const list = usePoll(listMerchants, LIST_EVERY_MS);
  const [secret, setSecret] = useState<MerchantWithSecret | null>(null);
  const [message, setMessage] = useState<{ text: string; tone: 'good' | 'bad' } | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [id, setId] = useState('');
  const [name, setName] = useState('');
  const [origins, setOrigins] = useState('');

  const head = (
    <div class="page-head">
      <h1>Merchants</h1>
      <p class="muted">Who notifyd delivers to, each with its own signing secret, allowed origins and limits.</p>
    </div>
  );

  if (isMissingEndpoint(list.error) || isDisabled(list.error, 'MERCHANTS_DISABLED')) {
    return (
      <>
        {head}
        <NeedsDatabase feature="Merchants" err={list.error} what="With it, each merchant gets its own signing secret (created, rotated and disabled here)." />
      </>
    );
  }

  async function act(key: string, fn: () => Promise<void>): Promise<void> {
    setBusy(key);
    setMessage(null);
    try {
      await fn();
      list.refresh();
    } catch (err) {
      setMessage({ text: (err as Error).message, tone: 'bad' });
    } finally {
      setBusy(null);
    }
  }

  const onCreate = (e: Event): void => {
    e.preventDefault();
    void act('create', async () => {
      const created = await createMerchant({ id: id.trim(), name: name.trim(), allowedOrigins: parseOrigins(origins) });
      setSecret(created);
      setId('');
      setName('');
      setOrigins('');
      setMessage({ text: `Merchant ${created.merchant.id} created.`, tone: 'good' });
    });
  };

  // A secret on screen not stored yet: another create or rotation would replace it, and it is never shown again.
  const locked = busy !== null || secret !== null;

  const rotate = (m: Merchant): void => {
    if (!confirm(`Rotate the signing secret of ${m.id}? The new one is shown once; the old one stays valid for the grace period.`)) return;
    void act(`rotate ${m.id}`, async () => {
      setSecret(await rotateMerchantSecret(m.id));
      setMessage({ text: `New secret for ${m.id}; the old one stays valid for the grace period.`, tone: 'good' });
    });
  };

  const toggle = (m: Merchant): void => {
    // Disabling parks the merchant's notifications: asked first. Enabling loses nothing.
    if (m.enabled && !confirm(`Disable ${m.id}? Its notifications are parked (disabled) until it is enabled again.`)) return;
    void act(`toggle ${m.id}`, async () => {
      const next = (await setMerchantEnabled(m.id, !m.enabled)).merchant;
      setMessage({ text: `Merchant ${m.id} ${next.enabled ? 'enabled' : 'disabled'}.`, tone: 'good' });
    });
  };

  const merchants = list.data?.merchants ?? [];
  return (
    <>
      {head}
      <ErrorNotice error={list.error} what="list the merchants" />
      <Live message={message?.text ?? null} tone={message?.tone} />
      {secret ? <SecretOnce shown={secret} onDone={() => setSecret(null)} /> : null}
      <Section title="Registered" id="merchants-title">
        {list.data?.more ? (
          <p class="muted">
            The first {MERCHANTS_LISTED.toLocaleString('en')} merchants by id; <code>notifyd ctl merchants show &lt;id&gt;</code> and the API reach the others.
          </p>
        ) : null}
        {merchants.length === 0 ? (
          <p class="empty">{list.data ? 'No merchant yet.' : 'Loading…'}</p>
        ) : (
          <div class="scroll">
            <table class="grid">
              <thead>
                <tr>
                  <th scope="col">Id</th>
                  <th scope="col">Name</th>
                  <th scope="col">State</th>
                  <th scope="col">Secret fingerprints</th>
                  <th scope="col">Allowed origins</th>
                  <th scope="col">Created</th>
                  <th scope="col">
                    <span class="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {merchants.map((m) => (
                  <tr key={m.id}>
                    <th scope="row" data-label="Id" class="nowrap">
                      {m.id}
                    </th>
                    <td data-label="Name">{m.name}</td>
                    <td data-label="State">
                      <StateBadge state={m.enabled ? (m.failingSince ? 'failing' : 'enabled') : 'disabled'} />
                      {!m.enabled && m.disabledReason ? <div class="muted small">{m.disabledReason}</div> : null}
                      {m.enabled && m.failingSince ? <div class="muted small">failing since {f.dateTime(m.failingSince)}</div> : null}
                    </td>
                    <td data-label="Fingerprints" class="wrap">
                      {m.secrets.map((s) => (
                        <div key={s.fingerprint}>
                          <code>{s.fingerprint}</code>
                          {s.expiresAt ? <span class="muted small"> (old, valid until {f.dateTime(s.expiresAt)})</span> : null}
                        </div>
                      ))}
                    </td>
                    <td data-label="Origins" class="wrap">
                      {(m.allowedOrigins ?? []).join(', ') || '—'}
                    </td>
                    <td data-label="Created">{f.dateTime(m.createdAt)}</td>
                    <td class="actions">
                      <button type="button" class="btn" disabled={locked} onClick={() => rotate(m)} aria-label={`Rotate the secret of ${m.id}`}>
                        Rotate secret
                      </button>{' '}
                      <button type="button" class="btn" disabled={busy !== null} onClick={() => toggle(m)} aria-label={`${m.enabled ? 'Disable' : 'Enable'} ${m.id}`}>
                        {m.enabled ? 'Disable' : 'Enable'}
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Section>
      <Section title="Add a merchant" id="create-title">
        <form class="stack-form" onSubmit={onCreate}>
          <label for="merchant-id">Id</label>
          <input id="merchant-id" required value={id} autocomplete="off" onInput={(e) => setId((e.target as HTMLInputElement).value)} />
          <label for="merchant-name">Name</label>
          <input id="merchant-name" required value={name} autocomplete="off" onInput={(e) => setName((e.target as HTMLInputElement).value)} />
          <label for="merchant-origins">Allowed origins (one per line, e.g. https://shop.example)</label>
          <textarea id="merchant-origins" rows={3} value={origins} onInput={(e) => setOrigins((e.target as HTMLTextAreaElement).value)} />
          <div>
            <button type="submit" class="btn btn-primary" disabled={locked}>
              Create
            </button>
            {secret ? <span class="muted small"> Store the secret shown above first.</span> : null}
          </div>
        </form>
      </Section>
    </>
  );
}
