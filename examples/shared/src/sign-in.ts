// The examples' stand-in for a host app's real sign-in: an account name, no password.
// Enough to reach the dashboard page from `pnpm demo`; a real app plugs its own session
// system into keyward's `authorize` the same way (see the README).

/** Where a signed-in user lands: keyward's dashboard page at the default mount path. */
export const DASHBOARD_PATH = '/v1/api-keys/dashboard';

/** The session cookie's name in every example. */
export const SESSION_COOKIE = 'keyward_demo_session';

/** The `GET /login` page: one field, `account`. */
export function loginPage(message?: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Sign in</title>
<link rel="icon" href="data:,">
</head>
<body>
<main>
<h1>Sign in to the keyward demo</h1>
${message ? `<p role="alert">${message}</p>\n` : ''}<form method="post" action="/login">
<p><label for="account">Account name</label><br>
<input id="account" name="account" required maxlength="64" autocomplete="username" autofocus></p>
<p><button type="submit">Sign in</button></p>
</form>
<p>Any name will do: this demo has no passwords. Each name is its own account.</p>
</main>
</body>
</html>
`;
}

/** The account a login form names: trimmed, 1 to 64 of letters, digits and `._-`; `null` for
 * anything else. */
export function readAccount(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const account = value.trim();
  return /^[A-Za-z0-9._-]{1,64}$/.test(account) ? account : null;
}

export const badAccountMessage =
  'Use 1 to 64 letters, digits, dots, dashes or underscores for the account name.';
