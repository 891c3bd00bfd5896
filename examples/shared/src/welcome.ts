/** What the example prints on start: the bootstrap keys, then curls for every route, each
 * line ready to paste into a POSIX shell (the create saves the new key's id in $ID for the
 * lines after it). */
export function welcomeText(info: {
  framework: string;
  store: string;
  baseUrl: string;
  accounts: string[];
  bootstrapped: Array<{ account: string; rawKey: string }>;
  /** The command that started the example, for the restart hint. */
  command?: string;
}): string {
  const { baseUrl } = info;
  const first = info.bootstrapped[0];
  const lines = [
    `keyward ${info.framework} example listening on ${baseUrl}`,
    `store: ${info.store}`,
    '',
  ];
  if (first) {
    lines.push('Bootstrap keys (shown once; store them now):');
    for (const { account, rawKey } of info.bootstrapped) lines.push(`${account} ${rawKey}`);
    lines.push('', 'Try it:', `export KEY=${first.rawKey}`);
  } else {
    const fresh = `${info.accounts[0] ?? 'demo'}-${Date.now().toString(36)}`;
    lines.push(
      `Accounts ${info.accounts.join(', ')} already hold keys (made on an earlier start). Paste the one you saved:`,
      'export KEY=<the key printed at the first start>',
      'or start once more with a fresh account, which gets a new bootstrap key:',
      `DEMO_ACCOUNTS=${fresh} ${info.command ?? 'pnpm demo'}`,
      '',
      'Then:',
    );
  }
  const json = `-H "X-API-Key: $KEY" -H "Content-Type: application/json"`;
  lines.push(
    '',
    '# Or manage keys in the browser: sign in (any account name), then use the dashboard',
    `login: ${baseUrl}/login`,
    '',
    '# Create an API key (its id goes into $ID for the lines below)',
    `ID=$(curl -s -X POST ${baseUrl}/v1/api-keys ${json} -d '{"name": "My New Key"}' | tee /dev/stderr | sed -E 's/.*"id":"([^"]+)".*/\\1/'); echo`,
    '',
    '# Create one that expires in a day and may only read',
    `curl -X POST ${baseUrl}/v1/api-keys ${json} -d '{"name": "Read-only", "expiresIn": 86400, "scopes": ["api_keys:read"]}'`,
    '',
    '# List all API keys',
    `curl ${baseUrl}/v1/api-keys -H "X-API-Key: $KEY"`,
    '',
    '# Rename an API key',
    `curl -X PATCH ${baseUrl}/v1/api-keys/$ID ${json} -d '{"name": "Staging Server"}'`,
    '',
    '# Roll it: a new key now, the old one keeps working for an hour',
    `curl -X POST ${baseUrl}/v1/api-keys/$ID/roll ${json} -d '{"expiresIn": 3600}'`,
    '',
    '# Revoke it, and every key it created',
    `curl -X DELETE "${baseUrl}/v1/api-keys/$ID?cascade=true" -H "X-API-Key: $KEY"`,
    '',
    "# The host app's own route, behind the same guard",
    `curl ${baseUrl}/v1/hello -H "X-API-Key: $KEY"`,
    '',
    'Ctrl-C stops the server.',
  );
  return lines.join('\n');
}
