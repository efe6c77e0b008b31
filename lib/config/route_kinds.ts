/**
 * The kinds of the `pools` and `routes` settings: named pools of backends, each with its own
 * policy, limits, timeout and retries, and the ordered route table that sends requests to them
 * (`core/routes.ts`). In the config file they are JSON; their flags take the same JSON as text.
 * Field rules are checked here, one field at a time; the rules that tie the table together
 * (routes that can never match, pools nobody uses) are `config.ts`'s, over the merged settings.
 *
 * @module
 */
import { z } from "zod";
import { type BackendConfig, backendList, type Kind, type Parsed } from "./kinds.ts";
import { POLICY_NAMES, type PolicyName } from "../core/policy_names.ts";
import { HASH_KEY_RULE, isValidHashKey } from "../shared/hash_key.ts";
import { isHttpToken } from "../shared/tokens.ts";
import { isHostPattern, isSafePrefix, type RouteConfig, SAFE_PREFIX_RULE } from "../core/routes.ts";
import { MAX_TIMER_MS } from "../shared/duration.ts";

/** One named pool: its backends and what it sets for itself (the rest as the top level). */
export interface PoolConfig {
  /** Its backends. */
  readonly backends: readonly BackendConfig[];
  /** Its policy. Default: `--policy`. */
  readonly policy?: PolicyName;
  /** What `hash` hashes. Default: `--hash-key`. */
  readonly hashKey?: string;
  /** Requests each backend takes at once. Default: `--max-in-flight`. */
  readonly maxInFlight?: number;
  /** Response-header timeout, ms. Default: `--timeout`. */
  readonly timeoutMs?: number;
  /** Retries on another backend. Default: `--retries`. */
  readonly retries?: number;
  /** Its health checks' own settings; the interval, timeout, rise and fall are the top level's. */
  readonly health?: { readonly path?: string };
}

/** Pools by name. */
export type PoolTable = Readonly<Record<string, PoolConfig>>;

/** The name of the pool the top-level `backends`, `policy` and the rest form. */
export const DEFAULT_POOL = "default";

const NAME_RULE = "must be letters, digits, -, _ or . (at most 64)";
const isName = (text: string): boolean => /^[A-Za-z0-9._-]{1,64}$/.test(text);
const WHOLE = "must be a whole number, 0 or more";
const HEALTH_PATH_RULE = 'must start with "/" and contain no spaces';

/** Whether text holds a control character (or, with `isSpaceControl`, a space). */
function hasControl(text: string, isSpaceControl: boolean): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f || (isSpaceControl && code === 0x20)) return true;
  }
  return false;
}

const nameSchema = z.string({ error: NAME_RULE }).refine(isName, { error: NAME_RULE });

const poolSchema: z.ZodType<PoolConfig> = z.strictObject({
  backends: backendList().schema,
  policy: z.enum(POLICY_NAMES, { error: `must be one of ${POLICY_NAMES.join(", ")}` })
    .optional(),
  hashKey: z.string({ error: HASH_KEY_RULE }).refine(isValidHashKey, { error: HASH_KEY_RULE })
    .optional(),
  maxInFlight: z.int({ error: WHOLE }).min(0, { error: WHOLE }).optional(),
  timeoutMs: z.number({ error: "must be a positive number" }).positive({
    error: "must be a positive number",
  }).max(MAX_TIMER_MS, { error: `must be at most ${MAX_TIMER_MS}` }).optional(),
  retries: z.int({ error: WHOLE }).min(0, { error: WHOLE }).optional(),
  health: z.strictObject({
    path: z.string({ error: HEALTH_PATH_RULE }).refine(
      (path) => path.startsWith("/") && !/\s/.test(path),
      { error: HEALTH_PATH_RULE },
    ).optional(),
  }, { error: 'must be an object {"path": "/health"}' }).optional(),
}, { error: 'must be an object {"backends": [...], ...}' }) as z.ZodType<PoolConfig>;

const poolTableSchema: z.ZodType<PoolTable> = z.record(nameSchema, poolSchema, {
  error: 'must be an object of pools by name: {"api": {"backends": [...]}}',
});

const HEADER_NAME_RULE = "must be a header name (an HTTP token)";
const headerName = z.string({ error: HEADER_NAME_RULE }).refine(isHttpToken, {
  error: HEADER_NAME_RULE,
}).transform((name) => name.toLowerCase());
const HEADER_VALUE_RULE = "must be a header value (no control characters)";
const headerValue = z.string({ error: HEADER_VALUE_RULE }).refine(
  (v) => !hasControl(v, false),
  {
    error: HEADER_VALUE_RULE,
  },
);
const prefix = z.string({ error: SAFE_PREFIX_RULE }).refine(isSafePrefix, {
  error: SAFE_PREFIX_RULE,
});
const HOST_RULE = "must be a host name, or *. and a host name";
const hostPattern = z.string({ error: HOST_RULE }).refine(isHostPattern, { error: HOST_RULE })
  .transform((host) => host.toLowerCase());
const METHOD_RULE = "must be a method (an HTTP token)";
const headerRules = z.strictObject({
  set: z.record(headerName, headerValue).optional(),
  remove: z.array(headerName).optional(),
}, { error: 'must be an object {"set": {...}, "remove": [...]}' });
const REDIRECT_RULE = "must be 301, 302, 303, 307 or 308";
const LIMIT_KEY_RULE = "must be client, route or header:NAME";

const routeSchema = z.strictObject({
  name: nameSchema,
  match: z.strictObject({
    host: z.union([hostPattern.transform((h) => [h]), z.array(hostPattern).min(1)]).optional(),
    path: prefix.optional(),
    pathExact: prefix.optional(),
    methods: z.array(
      z.string({ error: METHOD_RULE }).refine(isHttpToken, { error: METHOD_RULE })
        .transform((m) => m.toUpperCase()),
    ).min(1, { error: "must list at least one method" }).optional(),
    headers: z.record(headerName, z.union([z.literal(true), headerValue]), {
      error: 'must be an object of header names to a value or true: {"x-canary": "1"}',
    }).optional(),
  }, { error: "must be an object" }).optional(),
  pool: nameSchema.optional(),
  redirect: z.strictObject({
    to: z.string({ error: "must be a URL or a path" }).refine(
      (to) => to !== "" && !hasControl(to, true),
      { error: "must be a URL or a path, without spaces or control characters" },
    ),
    status: z.literal([301, 302, 303, 307, 308], { error: REDIRECT_RULE }),
    keepPath: z.boolean({ error: "must be true or false" }).optional(),
  }, { error: 'must be an object {"to": ..., "status": 301}' }).optional(),
  respond: z.strictObject({
    status: z.int({ error: "must be a status from 200 to 599" }).min(200, {
      error: "must be a status from 200 to 599",
    }).max(599, { error: "must be a status from 200 to 599" }),
    body: z.string({ error: "must be a string" }).optional(),
    contentType: headerValue.optional(),
  }, { error: 'must be an object {"status": 404, "body": ...}' }).optional(),
  rewrite: z.strictObject({
    stripPrefix: prefix.optional(),
    addPrefix: prefix.optional(),
  }, { error: 'must be an object {"stripPrefix": ..., "addPrefix": ...}' }).optional(),
  requestHeaders: headerRules.optional(),
  responseHeaders: headerRules.optional(),
  rateLimit: z.strictObject({
    perSecond: z.number({ error: "must be a positive number" }).positive({
      error: "must be a positive number",
    }).max(1_000_000, { error: "must be at most 1000000" }),
    burst: z.int({ error: "must be a whole number, 1 or more" }).min(1, {
      error: "must be a whole number, 1 or more",
    }).max(1_000_000, { error: "must be at most 1000000" }),
    key: z.string({ error: LIMIT_KEY_RULE }).refine(
      (key) =>
        key === "client" || key === "route" || /^header:[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(key),
      { error: LIMIT_KEY_RULE },
    ).transform((key) => key.startsWith("header:") ? key.toLowerCase() : key).optional(),
  }, { error: 'must be an object {"perSecond": 10, "burst": 5, "key": "client"}' }).optional(),
}, { error: 'must be an object {"name": ..., "match": {...}, "pool": ...}' }).transform(
  (route) => ({
    ...route,
    ...(route.rateLimit === undefined ? {} : {
      rateLimit: { ...route.rateLimit, key: route.rateLimit.key ?? "client" },
    }),
  }),
) as unknown as z.ZodType<RouteConfig>;

const routeTableSchema: z.ZodType<readonly RouteConfig[]> = z.array(routeSchema, {
  error: "must be a list of routes",
});

/** Reads a flag's JSON text with a schema, naming the first problem. */
function parseJson<T>(schema: z.ZodType<T>, text: string): Parsed<T> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, rule: "must be JSON, as in the config file" };
  }
  const result = schema.safeParse(json);
  if (result.success) return { ok: true, value: result.data };
  const issue = result.error.issues[0];
  const where = issue === undefined || issue.path.length === 0
    ? ""
    : `${issue.path.map(String).join(".")} `;
  return { ok: false, rule: `${where}${issue?.message ?? "is invalid"}` };
}

/** Named pools: `{"api": {"backends": ["http://10.0.0.1:80"], "policy": "p2c"}}`. */
export function poolTable(): Kind<PoolTable> {
  return {
    parse: (text) => parseJson(poolTableSchema, text),
    schema: poolTableSchema,
    format: (pools) => JSON.stringify(pools),
    fileHint:
      '({"name": {"backends": [...], "policy", "hashKey", "maxInFlight", "timeoutMs", "retries", "health": {"path"}}})',
  };
}

/** The route table: a list of routes, first match wins. */
export function routeTable(): Kind<readonly RouteConfig[]> {
  return {
    parse: (text) => parseJson(routeTableSchema, text),
    schema: routeTableSchema,
    format: (routes) => JSON.stringify(routes),
    fileHint: '([{"name", "match", "pool" | "redirect" | "respond", "rewrite", ...}])',
  };
}
