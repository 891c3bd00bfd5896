/**
 * Every error keyward reports carries a `code` from this one table; the HTTP layer maps a
 * code to its status here and nowhere else.
 */
export const errorCodes = {
  invalid_json: { status: 400, message: 'The request body is not valid JSON.' },
  invalid_request: { status: 400, message: 'The request is invalid.' },
  missing_api_key: { status: 401, message: 'An API key is required in the X-API-Key header.' },
  invalid_api_key: { status: 401, message: 'The API key is invalid.' },
  invalid_signature: {
    status: 401,
    message: 'The request is not signed by a known key, or its signature is invalid.',
  },
  insufficient_scope: {
    status: 403,
    message: 'The API key lacks a scope this request needs.',
  },
  forbidden_origin: {
    status: 403,
    message: 'This request must come from a page of the same origin.',
  },
  not_found: { status: 404, message: 'The requested resource was not found.' },
  method_not_allowed: { status: 405, message: 'The method is not allowed for this resource.' },
  key_limit_reached: {
    status: 409,
    message: 'The account already holds the maximum number of API keys.',
  },
  payload_too_large: { status: 413, message: 'The request body is too large.' },
  unsupported_media_type: {
    status: 415,
    message: 'The request body must be application/json (UTF-8).',
  },
  rate_limited: { status: 429, message: 'Too many requests. Retry later.' },
  credits_exhausted: { status: 429, message: 'The API key has no credits left.' },
  service_unavailable: {
    status: 503,
    message: 'The service is temporarily unavailable. Retry later.',
  },
  internal_error: { status: 500, message: 'An internal error occurred.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof errorCodes;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(errorCodes, value);
}

/**
 * The one error class keyward throws on purpose. Its message is safe to show to a client:
 * it never holds a raw key, a secret, a stack or a store's own error text (that goes in
 * `cause`, for the host's `onError` hook).
 */
export class KeywardError extends Error {
  override readonly name = 'KeywardError';
  readonly code: ErrorCode;
  readonly status: number;
  /** Seconds a client should wait before retrying; set on `service_unavailable`,
   * `rate_limited` and (with a refill) `credits_exhausted`. */
  readonly retryAfter: number | undefined;

  constructor(
    code: ErrorCode,
    options: { message?: string; cause?: unknown; retryAfter?: number } = {},
  ) {
    super(options.message ?? errorCodes[code].message, { cause: options.cause });
    this.code = code;
    this.status = errorCodes[code].status;
    this.retryAfter = options.retryAfter;
  }
}

export function isKeywardError(error: unknown): error is KeywardError {
  return error instanceof KeywardError;
}
