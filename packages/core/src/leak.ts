import { createHash, createPublicKey, type KeyObject, verify } from 'node:crypto';

/**
 * Leak response (docs/design.md, "Leak response"): what keyward does with a key someone
 * reports as published, and the parts of GitHub's secret-scanning partner program it speaks.
 */

/** What happens to a key confirmed leaked. `quarantine` is the default. */
export type LeakPolicy = 'revoke' | 'quarantine' | 'notify';
export const LEAK_POLICIES: readonly LeakPolicy[] = ['revoke', 'quarantine', 'notify'];

/** How long a quarantined key keeps working, by default (1 hour) and at most (24 hours). */
export const DEFAULT_QUARANTINE_GRACE_SECONDS = 3600;
export const MAX_QUARANTINE_GRACE_SECONDS = 86_400;

/** What `onLeak` is told: never the key itself. */
export interface LeakEvent {
  keyId: string;
  ownerId: string;
  /** Where the key was found, when the reporter said (GitHub sends the file's URL). */
  url: string | null;
  /** Who reported it: `github` for the alert endpoint, `report` for the public route,
   * or what the host's own code passed. */
  source: string;
  /** What was done: the policy in force. */
  action: LeakPolicy;
}

/** A leak report for one token, as `service.reportLeak` takes it. */
/** Most keys in one request to the public report route. */
export const MAX_REPORTED_KEYS = 100;

export interface LeakReport {
  source: string;
  url?: string | null;
}

/** The outcome for a token that is a real key: what was done to it. `null` (false
 * positive) for anything else. */
export interface LeakOutcome {
  keyId: string;
  action: LeakPolicy;
  /** False when the key had already been handled (a repeated alert): nothing changed and
   * `onLeak` was not called again. */
  firstReport: boolean;
}

/** GitHub's public keys for secret scanning, in the JSON shape of
 * `GET https://api.github.com/meta/public_keys/secret_scanning`. */
export interface GitHubPublicKeys {
  public_keys: { key_identifier: string; key: string; is_current?: boolean }[];
}

/**
 * Reads GitHub's public-key document (the object, or its JSON text) into verification keys
 * by identifier. Every key must be an ECDSA P-256 public key in PEM: anything else is a
 * configuration error, thrown at startup rather than found on the first alert. Keys that
 * are no longer current are kept: GitHub signs with one until its successor takes over.
 */
export function readGitHubPublicKeys(value: GitHubPublicKeys | string): Map<string, KeyObject> {
  let document: unknown = value;
  if (typeof value === 'string') {
    try {
      document = JSON.parse(value);
    } catch {
      throw new TypeError('keyward: the GitHub public keys are not valid JSON.');
    }
  }
  const list = (document as Partial<GitHubPublicKeys> | null)?.public_keys;
  if (!Array.isArray(list) || list.length === 0) {
    throw new TypeError(
      'keyward: the GitHub public keys must be an object with a non-empty `public_keys` array, as https://api.github.com/meta/public_keys/secret_scanning returns.',
    );
  }
  const keys = new Map<string, KeyObject>();
  for (const entry of list) {
    const { key_identifier: id, key } = (entry ?? {}) as Partial<
      GitHubPublicKeys['public_keys'][number]
    >;
    if (typeof id !== 'string' || id === '' || typeof key !== 'string') {
      throw new TypeError(
        'keyward: every GitHub public key needs a `key_identifier` and a PEM `key`.',
      );
    }
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey(key);
    } catch {
      throw new TypeError(`keyward: GitHub public key ${id} is not a PEM public key.`);
    }
    if (
      publicKey.asymmetricKeyType !== 'ec' ||
      publicKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1'
    ) {
      throw new TypeError(`keyward: GitHub public key ${id} is not an ECDSA P-256 key.`);
    }
    keys.set(id, publicKey);
  }
  return keys;
}

/**
 * Checks GitHub's signature of an alert: ECDSA P-256 with SHA-256 over the raw body, the
 * signature base64 DER. False for an unknown identifier, a malformed signature or a
 * mismatch; never throws.
 */
export function verifyGitHubSignature(
  keys: ReadonlyMap<string, KeyObject>,
  identifier: string | undefined,
  signature: string | undefined,
  body: Uint8Array,
): boolean {
  if (identifier === undefined || signature === undefined) return false;
  const key = keys.get(identifier.trim());
  if (!key) return false;
  const encoded = signature.trim();
  // DER P-256 signatures are 70 to 72 bytes: about 96 base64 characters.
  if (encoded.length === 0 || encoded.length > 200 || !/^[A-Za-z0-9+/]+=*$/.test(encoded)) {
    return false;
  }
  try {
    return verify('sha256', body, { key, dsaEncoding: 'der' }, Buffer.from(encoded, 'base64'));
  } catch {
    return false;
  }
}

/** One match in a GitHub alert. */
export interface GitHubMatch {
  token: string;
  type: string;
  url: string | null;
}

/** Why an alert body was refused: not the expected shape, or more matches than allowed. */
export type AlertParseResult =
  | { ok: true; matches: GitHubMatch[] }
  | { ok: false; reason: 'invalid' | 'too_many' };

/** Longest string keyward reads from an alert field; a key is far shorter. */
export const MAX_ALERT_FIELD_LENGTH = 2048;

/** Parses a (signed) alert body: a JSON array of `{ token, type, url?, source? }`. */
export function parseGitHubAlert(text: string, maxMatches: number): AlertParseResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'invalid' };
  }
  if (!Array.isArray(value) || value.length === 0) return { ok: false, reason: 'invalid' };
  if (value.length > maxMatches) return { ok: false, reason: 'too_many' };
  const matches: GitHubMatch[] = [];
  for (const item of value) {
    if (typeof item !== 'object' || item === null) return { ok: false, reason: 'invalid' };
    const { token, type, url } = item as Record<string, unknown>;
    if (!isShortString(token) || !isShortString(type)) return { ok: false, reason: 'invalid' };
    matches.push({ token, type, url: isShortString(url) ? url : null });
  }
  return { ok: true, matches };
}

function isShortString(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_ALERT_FIELD_LENGTH;
}

/** One line of the partner program's feedback. The token is named by its SHA-256, never
 * its text: the answer holds no secret, whoever reads or logs it. */
export interface GitHubFeedback {
  token_hash: string;
  token_type: string;
  label: 'true_positive' | 'false_positive';
}

export function gitHubFeedback(match: GitHubMatch, realKey: boolean): GitHubFeedback {
  return {
    token_hash: createHash('sha256').update(match.token).digest('hex'),
    token_type: match.type,
    label: realKey ? 'true_positive' : 'false_positive',
  };
}
