/** What the example prints on start: the bootstrap keys, then the spec's curls, ready to
 * paste. */
export function welcomeText(info: {
  framework: string;
  store: string;
  baseUrl: string;
  accounts: string[];
  bootstrapped: Array<{ account: string; rawKey: string }>;
}): string {
  const { baseUrl } = info;
  const first = info.bootstrapped[0];
  const key = first ? first.rawKey : '<your key>';
  const lines = [
    `keyward ${info.framework} example listening on ${baseUrl}`,
    `store: ${info.store}`,
    '',
  ];
  if (info.bootstrapped.length > 0) {
    lines.push('Bootstrap keys (shown once; store them now):');
    for (const { account, rawKey } of info.bootstrapped) lines.push(`${account} ${rawKey}`);
  } else {
    lines.push(
      `Accounts ${info.accounts.join(', ')} already hold keys: use one you saved, or start with`,
      'another DEMO_ACCOUNTS name (or KEYWARD_STORE=memory) to get a fresh bootstrap key.',
    );
  }
  lines.push(
    '',
    'Try it:',
    `export KEY=${key}`,
    '',
    '# Create an API key',
    `curl -X POST ${baseUrl}/v1/api-keys -H "X-API-Key: $KEY" -H "Content-Type: application/json" -d '{"name": "My New Key"}'`,
    '',
    '# List all API keys',
    `curl ${baseUrl}/v1/api-keys -H "X-API-Key: $KEY"`,
    '',
    '# Rename an API key (use an id from the list)',
    `curl -X PATCH ${baseUrl}/v1/api-keys/key_123 -H "X-API-Key: $KEY" -H "Content-Type: application/json" -d '{"name": "Staging Server"}'`,
    '',
    '# Revoke an API key',
    `curl -X DELETE ${baseUrl}/v1/api-keys/key_123 -H "X-API-Key: $KEY"`,
    '',
    "# The host app's own route, behind the same guard",
    `curl ${baseUrl}/v1/hello -H "X-API-Key: $KEY"`,
    '',
    'Ctrl-C stops the server.',
  );
  return lines.join('\n');
}
