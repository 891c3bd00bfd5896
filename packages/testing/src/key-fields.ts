/** The fields of a key in an HTTP answer, in the order the README lists them: what a list,
 * rename or revoke answers, and what a create or roll answers (the raw key, once, too). */
export const KEY_FIELDS = [
  'id',
  'name',
  'keyPrefix',
  'keySuffix',
  'lastUsedAt',
  'createdAt',
  'expiresAt',
  'scopes',
  'metadata',
  'createdBy',
  'rateLimit',
  'credits',
  'leakedAt',
  'leakSource',
];
export const CREATE_FIELDS = [...KEY_FIELDS.slice(0, 2), 'rawKey', ...KEY_FIELDS.slice(2)];
