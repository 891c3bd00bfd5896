import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

/** Checks one answer against the document: the list of what does not match, empty if all does. */
export type OpenApiResponseCheck = (answer: {
  method: string;
  /** The request target as sent (a query is ignored). */
  path: string;
  status: number;
  /** The body, parsed; `undefined` when it was not JSON. */
  json: unknown;
}) => string[];

interface PathEntry {
  template: string;
  pattern: RegExp;
  item: Record<string, unknown>;
}

/**
 * Validates answers against an OpenAPI 3.1 document with ajv (JSON Schema 2020-12, the
 * dialect of 3.1): the operation is found by method and path template, its response by
 * status, and the body must match that response's schema. A status the operation does not
 * list is a mismatch. A method the path does not have, or a path under a documented one
 * that names no operation (405, 404), must be the document's `Error` envelope.
 */
export function openApiResponseChecker(document: Record<string, unknown>): OpenApiResponseCheck {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  // biome-ignore lint/suspicious/noExplicitAny: ajv-formats' CommonJS default export, typed loosely.
  (addFormats as any)(ajv);
  ajv.addSchema(document, 'openapi');
  const paths = Object.entries(document.paths as Record<string, Record<string, unknown>>).map(
    ([template, item]): PathEntry => ({
      template,
      item,
      pattern: new RegExp(
        `^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}/?$`,
      ),
    }),
  );
  // A concrete path wins over a template that also matches it (`/report-leak` over `/{id}`),
  // as OpenAPI says: fewer template parts first.
  const templateParts = (p: PathEntry) => p.template.split('{').length;
  paths.sort((a, b) => templateParts(a) - templateParts(b));
  const mount = paths.map((p) => p.template).sort((a, b) => a.length - b.length)[0] ?? '/';
  const pointer = (...parts: string[]) =>
    `openapi#/${parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;

  const validate = (ref: string, json: unknown): string[] => {
    const check = ajv.getSchema(ref);
    if (!check) return [`no schema at ${ref}`];
    if (check(json)) return [];
    return (check.errors ?? []).map((e) => `${e.instancePath || '(body)'} ${e.message ?? ''}`);
  };

  return ({ method, path, status, json }) => {
    const target = path.split(/[?#]/, 1)[0] ?? '';
    if (!target.startsWith(mount)) return [];
    const label = `${method} ${target} -> ${status}`;
    const entry = paths.find((p) => p.pattern.test(target));
    const m = method.toLowerCase() === 'head' ? 'get' : method.toLowerCase();
    const operation = entry?.item[m] as { responses: Record<string, unknown> } | undefined;
    if (!entry || !operation) {
      if (status !== 404 && status !== 405 && status !== 400 && status !== 500) {
        return [`${label}: no operation in the document, and not an error answer`];
      }
      if (method.toUpperCase() === 'HEAD') return [];
      return validate(pointer('components', 'schemas', 'Error'), json).map((e) => `${label}: ${e}`);
    }
    const response = operation.responses[String(status)] as
      | { content?: Record<string, unknown> }
      | undefined;
    if (!response) return [`${label}: status ${status} is not in the document`];
    if (method.toUpperCase() === 'HEAD' || !response.content?.['application/json']) return [];
    return validate(
      pointer(
        'paths',
        entry.template,
        m,
        'responses',
        String(status),
        'content',
        'application/json',
        'schema',
      ),
      json,
    ).map((e) => `${label}: ${e}`);
  };
}
