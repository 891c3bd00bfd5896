export {};

// The dashboard page's script (docs/design.md, "The dashboard page"): the account's keys
// through the JSON routes of the mount path this script is served under, with the host's
// session cookie. No framework: the page is one list and four actions.

/** A key as the list route shows it. */
interface ApiKey {
  id: string;
  name: string;
  keyPrefix: string;
  keySuffix: string;
  lastUsedAt: string | null;
  createdAt: string;
  expiresAt: string | null;
  scopes: string[];
  rateLimit: { limit: number; windowSec: number } | null;
  credits: {
    remaining: number;
    refill: { amount: number; every: 'day' | 'month' } | null;
    strict: boolean;
  } | null;
  leakedAt: string | null;
  leakSource: string | null;
}

interface Column {
  label: string;
  cell(key: ApiKey): Node;
}

// The script lives at <mount>/dashboard/app.<hash>.js: the API is two levels up.
const collection = new URL('..', new URL('.', import.meta.url)).pathname.replace(/\/$/, '');

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const errorBox = $('error');
const listStatus = $('keys-status');
const tableBody = $<HTMLTableSectionElement>('keys-body');
const table = $<HTMLTableElement>('keys');
const announcer = $('reveal-region');
const leakWarnings = $('leak-warnings');

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: 'medium',
  timeStyle: 'short',
});
const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const numberFormat = new Intl.NumberFormat();
const windowNames: Record<number, string> = {
  1: 'second',
  60: 'minute',
  3600: 'hour',
  86400: 'day',
};

/**
 * The list's columns, in order: header, cell and the narrow layout's labels all come from
 * here, so a new key field is one more entry.
 */
const columns: Column[] = [
  {
    label: 'Name',
    cell: (key) => {
      const name = text(key.name, 'name');
      if (!key.leakedAt) return name;
      const box = el('span', { class: 'name-cell' }, name);
      box.append(el('span', { class: 'badge' }, 'Leaked'));
      return box;
    },
  },
  { label: 'Key', cell: (key) => el('code', {}, `${key.keyPrefix}…${key.keySuffix}`) },
  {
    label: 'Created',
    cell: (key) => time(key.createdAt, dateFormat.format(new Date(key.createdAt))),
  },
  {
    label: 'Last used',
    cell: (key) =>
      key.lastUsedAt ? time(key.lastUsedAt, relative(key.lastUsedAt)) : text('Never'),
  },
  {
    label: 'Expires',
    cell: (key) => {
      if (!key.expiresAt) return text('Never');
      const past = Date.parse(key.expiresAt) <= Date.now();
      return time(key.expiresAt, `${past ? 'Expired ' : ''}${relative(key.expiresAt)}`);
    },
  },
  {
    label: 'Rate limit',
    cell: (key) =>
      key.rateLimit
        ? text(
            `${numberFormat.format(key.rateLimit.limit)} per ${windowNames[key.rateLimit.windowSec] ?? `${numberFormat.format(key.rateLimit.windowSec)} s`}`,
          )
        : text('None'),
  },
  {
    label: 'Credits',
    cell: (key) => {
      if (!key.credits) return text('Unmetered');
      const { remaining, refill } = key.credits;
      const left = `${numberFormat.format(remaining)} left`;
      return text(
        refill
          ? `${left}, refilled to ${numberFormat.format(refill.amount)} each ${refill.every}`
          : left,
      );
    },
  },
  { label: 'Scopes', cell: (key) => text(key.scopes.join(' ')) },
  { label: 'Actions', cell: actionsCell },
];

let keys: ApiKey[] = [];

$('keys-head').replaceChildren(
  ...columns.map((column) => el('th', { scope: 'col' }, column.label)),
);

/** Calls a JSON route of the mount path; the message of an error answer is thrown. */
async function api(method: string, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(collection + path, {
    method,
    credentials: 'same-origin',
    headers:
      body === undefined
        ? { Accept: 'application/json' }
        : { Accept: 'application/json', 'Content-Type': 'application/json' },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const payload = (await response.json().catch(() => null)) as
    | { success: true; data?: unknown; revoked?: string[] }
    | { success: false; error: { code: string; message: string } }
    | null;
  if (!payload?.success) {
    const message =
      response.status === 401
        ? 'You are signed out. Sign in again, then reload this page.'
        : (payload?.error.message ?? `The server answered ${response.status}.`);
    throw new Error(message);
  }
  return 'data' in payload ? payload.data : payload;
}

function showError(error: unknown): void {
  errorBox.textContent = error instanceof Error ? error.message : String(error);
  errorBox.hidden = false;
}

function clearError(): void {
  errorBox.hidden = true;
  errorBox.textContent = '';
}

async function refresh(focus?: { id: string; action: string }): Promise<void> {
  keys = (await api('GET', '')) as ApiKey[];
  render();
  if (focus) {
    const target =
      tableBody.querySelector<HTMLElement>(
        `[data-id="${CSS.escape(focus.id)}"][data-action="${focus.action}"]`,
      ) ?? $('create-name');
    target.focus();
  }
}

function render(): void {
  tableBody.replaceChildren(
    ...keys.map((key) => {
      const row = el('tr');
      for (const column of columns) {
        const cell = el(column === columns[0] ? 'th' : 'td', { 'data-label': column.label });
        if (column === columns[0]) cell.setAttribute('scope', 'row');
        cell.append(column.cell(key));
        row.append(cell);
      }
      return row;
    }),
  );
  leakWarnings.replaceChildren(
    ...keys.filter((key) => key.leakedAt && !isExpired(key)).map(leakWarning),
  );
  table.hidden = keys.length === 0;
  listStatus.textContent =
    keys.length === 0 ? 'No keys yet.' : `${keys.length} ${keys.length === 1 ? 'key' : 'keys'}.`;
}

function isExpired(key: ApiKey): boolean {
  return key.expiresAt !== null && Date.parse(key.expiresAt) <= Date.now();
}

/** Who reported a leak, in words. */
function leakSourceLabel(source: string | null): string {
  if (source === 'github') return 'GitHub secret scanning';
  if (source === 'report') return 'a public report';
  return source ?? 'an unknown source';
}

/** The warning for a leaked key that still works: what happened, when it stops, and the
 * roll that replaces it. */
function leakWarning(key: ApiKey): Node {
  const headingId = `leak-title-${key.id}`;
  const leakedAt = key.leakedAt ?? '';
  const what = el(
    'p',
    {},
    `Reported leaked by ${leakSourceLabel(key.leakSource)} on `,
    time(leakedAt, dateTimeFormat.format(new Date(leakedAt))),
    '. It can no longer manage keys, ',
  );
  if (key.expiresAt) {
    what.append('and it stops working ', time(key.expiresAt, relative(key.expiresAt)), '.');
  } else {
    what.append('but it works until you roll or revoke it.');
  }
  const rollNow = el(
    'button',
    {
      type: 'button',
      class: 'danger-solid',
      'data-id': key.id,
      'data-action': 'roll-now',
      'aria-label': `Roll now, ${key.name}`,
    },
    'Roll now',
  );
  rollNow.addEventListener('click', () => void roll(key, 'roll-now'));
  return el(
    'section',
    { class: 'leak-warning', 'aria-labelledby': headingId },
    el('h2', { id: headingId }, `Leaked key: ${key.name}`),
    what,
    el(
      'p',
      {},
      'Roll it, then put the new key where this one is used. The new key keeps this key’s settings, the shortened expiry included: for a longer-lived key, create one instead.',
    ),
    el('div', { class: 'actions' }, rollNow),
  );
}

function actionsCell(key: ApiKey): Node {
  const box = el('div', { class: 'actions' });
  const button = (action: string, label: string, run: () => void, danger = false) => {
    const b = el(
      'button',
      {
        type: 'button',
        'data-id': key.id,
        'data-action': action,
        'aria-label': `${label} ${key.name}`,
        class: danger ? 'danger' : 'secondary',
      },
      label,
    );
    b.addEventListener('click', run);
    box.append(b);
  };
  button('rename', 'Rename', () => startRename(key));
  // An expired key cannot be rolled (the API answers 404): it can be renamed or revoked.
  if (!isExpired(key)) button('roll', 'Roll', () => void roll(key));
  button('revoke', 'Revoke', () => void revoke(key), true);
  return box;
}

/** Inline rename: the name cell becomes a small form; Escape or Cancel puts it back. */
function startRename(key: ApiKey): void {
  const row = tableBody.querySelector(`[data-id="${CSS.escape(key.id)}"]`)?.closest('tr');
  const cell = row?.firstElementChild;
  if (!cell) return;
  const inputId = `rename-${key.id}`;
  const input = el('input', {
    id: inputId,
    value: key.name,
    required: '',
    maxlength: '100',
    autocomplete: 'off',
  }) as HTMLInputElement;
  const form = el(
    'form',
    { class: 'rename' },
    el('label', { for: inputId, class: 'visually-hidden' }, `New name for ${key.name}`),
    input,
    el('button', { type: 'submit' }, 'Save'),
    el('button', { type: 'button', class: 'secondary', 'data-cancel': '' }, 'Cancel'),
  );
  const cancel = () => {
    render();
    tableBody
      .querySelector<HTMLElement>(`[data-id="${CSS.escape(key.id)}"][data-action="rename"]`)
      ?.focus();
  };
  form.querySelector('[data-cancel]')?.addEventListener('click', cancel);
  form.addEventListener('keydown', (event) => {
    if ((event as KeyboardEvent).key === 'Escape') cancel();
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void run(async () => {
      await api('PATCH', `/${encodeURIComponent(key.id)}`, { name: input.value });
      await refresh({ id: key.id, action: 'rename' });
      listStatus.textContent = `Renamed to ${input.value.trim()}.`;
    });
  });
  cell.replaceChildren(form);
  input.focus();
  input.select();
}

/** Asks in a modal dialog; resolves with the button's value, or '' on Escape. */
function ask(dialog: HTMLDialogElement): Promise<string> {
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue), { once: true });
  });
}

async function roll(key: ApiKey, from = 'roll'): Promise<void> {
  const dialog = $<HTMLDialogElement>('roll-dialog');
  $('roll-name').textContent = key.name;
  const note = $('roll-leak-note');
  note.hidden = !(key.leakedAt && key.expiresAt);
  note.textContent =
    key.leakedAt && key.expiresAt
      ? `This key was reported leaked: it stops working ${relative(key.expiresAt)} at the latest, whatever the grace period, and so does the new key.`
      : '';
  if ((await ask(dialog)) !== 'confirm') return focusAction(key.id, from);
  const grace = Number($<HTMLSelectElement>('roll-grace').value);
  await run(async () => {
    const rolled = (await api('POST', `/${encodeURIComponent(key.id)}/roll`, {
      expiresIn: grace,
    })) as ApiKey & { rawKey: string };
    await refresh();
    reveal(rolled.rawKey, `New key for ${rolled.name}`);
  });
}

async function revoke(key: ApiKey): Promise<void> {
  const dialog = $<HTMLDialogElement>('revoke-dialog');
  $('revoke-name').textContent = key.name;
  const cascade = $<HTMLInputElement>('revoke-cascade');
  cascade.checked = false;
  if ((await ask(dialog)) !== 'confirm') return focusAction(key.id, 'revoke');
  await run(async () => {
    const answer = (await api(
      'DELETE',
      `/${encodeURIComponent(key.id)}${cascade.checked ? '?cascade=true' : ''}`,
    )) as { revoked?: string[] };
    await refresh();
    const count = answer.revoked?.length ?? 1;
    listStatus.textContent = `Revoked ${key.name}${count > 1 ? ` and ${count - 1} more` : ''}.`;
    $('create-name').focus();
  });
}

function focusAction(id: string, action: string): void {
  document
    .querySelector<HTMLElement>(`[data-id="${CSS.escape(id)}"][data-action="${action}"]`)
    ?.focus();
}

/** The one-time display of a raw key: in the live region, until dismissed. */
function reveal(rawKey: string, title: string): void {
  const status = el('p', { id: 'copy-status', role: 'status' });
  const copy = el('button', { type: 'button', id: 'copy-key' }, 'Copy key');
  const dismiss = el(
    'button',
    { type: 'button', class: 'secondary', id: 'dismiss-key' },
    'I have saved it, hide the key',
  );
  const panel = el(
    'section',
    { class: 'reveal', 'aria-labelledby': 'reveal-title' },
    el('h2', { id: 'reveal-title' }, title),
    el('p', {}, 'Copy it now: this is the only time it is shown.'),
    el('code', { id: 'raw-key', class: 'raw-key' }, rawKey),
    el('div', { class: 'actions' }, copy, dismiss),
    status,
  );
  copy.addEventListener('click', () => {
    navigator.clipboard.writeText(rawKey).then(
      () => {
        status.textContent = 'Copied to the clipboard.';
      },
      () => {
        const range = document.createRange();
        range.selectNodeContents($('raw-key'));
        getSelection()?.removeAllRanges();
        getSelection()?.addRange(range);
        status.textContent = 'Could not copy: the key is selected, press Ctrl+C (⌘C).';
      },
    );
  });
  dismiss.addEventListener('click', () => {
    announcer.replaceChildren();
    $('create-name').focus();
  });
  announcer.replaceChildren(panel);
  copy.focus();
}

async function run(action: () => Promise<void>): Promise<void> {
  clearError();
  try {
    await action();
  } catch (error) {
    showError(error);
  }
}

$<HTMLFormElement>('create-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget as HTMLFormElement;
  const name = $<HTMLInputElement>('create-name').value;
  const expiresIn = $<HTMLSelectElement>('create-expiry').value;
  const scopes = $<HTMLInputElement>('create-scopes').value.split(/\s+/).filter(Boolean);
  const value = (id: string) => $<HTMLInputElement>(id).value.trim();
  const rate = value('create-rate');
  const credits = value('create-credits');
  const refill = value('create-refill');
  void run(async () => {
    const created = (await api('POST', '', {
      name,
      ...(expiresIn ? { expiresIn: Number(expiresIn) } : {}),
      ...(scopes.length > 0 ? { scopes } : {}),
      // Empty fields leave the key unlimited; the server checks the ranges.
      ...(rate
        ? { rateLimit: { limit: Number(rate), windowSec: Number(value('create-window') || 60) } }
        : {}),
      ...(credits
        ? {
            credits: {
              remaining: Number(credits),
              refill: refill
                ? { amount: Number(refill), every: value('create-refill-every') }
                : null,
            },
          }
        : {}),
    })) as ApiKey & { rawKey: string };
    form.reset();
    await refresh();
    reveal(created.rawKey, `New key: ${created.name}`);
  });
});

function relative(iso: string): string {
  const seconds = (Date.parse(iso) - Date.now()) / 1000;
  const units: Array<[Intl.RelativeTimeFormatUnit, number]> = [
    ['year', 31_536_000],
    ['month', 2_592_000],
    ['day', 86_400],
    ['hour', 3600],
    ['minute', 60],
  ];
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return relativeFormat.format(Math.round(seconds / size), unit);
  }
  return relativeFormat.format(Math.round(seconds), 'second');
}

function time(iso: string, label: string): Node {
  return el('time', { datetime: iso, title: new Date(iso).toLocaleString() }, label);
}

function text(value: string, className?: string): Node {
  return className ? el('span', { class: className }, value) : document.createTextNode(value);
}

function el(
  tag: string,
  attributes: Record<string, string> = {},
  ...children: Array<Node | string>
): HTMLElement {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

void run(() => refresh());
