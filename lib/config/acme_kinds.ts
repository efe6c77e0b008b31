/**
 * The kinds of the ACME settings: a list of domain names (`--acme-domain`) and an https URL
 * (`--acme-directory`).
 *
 * @module
 */
import { z } from "zod";
import type { Kind, Parsed } from "./kinds.ts";

/** The rule a domain name follows, as the messages state it. */
export const DOMAIN_RULE = "must be a DNS name such as example.com: letters, digits, hyphens " +
  "and dots, no wildcard (the HTTP-01 challenge cannot prove one) and no IP address";

/**
 * Whether `name` is a DNS name an HTTP-01 challenge can prove: labels of letters, digits and
 * hyphens (not at either end), at most 253 characters, not all digits (an IPv4 address).
 *
 * @param name The name, already lower-cased.
 * @returns Whether it is such a name.
 *
 * @example
 * ```ts
 * import { isAcmeDomain } from "./acme_kinds.ts";
 * if (!isAcmeDomain("www.example.com") || isAcmeDomain("*.example.com")) throw new Error();
 * if (isAcmeDomain("10.0.0.1") || isAcmeDomain("a..b")) throw new Error();
 * ```
 */
export function isAcmeDomain(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split(".");
  if (labels.every((label) => /^\d+$/.test(label))) return false;
  return labels.every((label) => /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(label));
}

/**
 * Domain names: a flag takes a comma list (and may be repeated), the file a list of strings.
 * Names are lower-cased; a name given twice counts once.
 *
 * @returns The setting's kind.
 */
export function domainList(): Kind<readonly string[]> {
  const read = (entries: readonly string[]): Parsed<readonly string[]> => {
    const names: string[] = [];
    for (const entry of entries) {
      const name = entry.trim().toLowerCase();
      if (!isAcmeDomain(name)) return { ok: false, rule: DOMAIN_RULE, text: entry };
      if (!names.includes(name)) names.push(name);
    }
    return { ok: true, value: names };
  };
  return {
    parse: (text) => read(text.split(",").filter((entry) => entry.trim() !== "")),
    schema: z.array(z.string({ error: DOMAIN_RULE }), { error: "must be a list of DNS names" })
      .transform((entries, context) => {
        const parsed = read(entries);
        if (parsed.ok) return parsed.value;
        context.addIssue({ code: "custom", message: `"${parsed.text}" ${parsed.rule}` });
        return z.NEVER;
      }),
    format: (names) => names.join(","),
    isRepeatable: true,
    fileHint: "(a list of strings)",
  };
}

/** An `https://` URL, such as an ACME directory. */
export function httpsUrl(): Kind<string> {
  const rule = "must be an https URL";
  const isHttps = (text: string): boolean => URL.parse(text)?.protocol === "https:";
  return {
    parse: (text) => isHttps(text) ? { ok: true, value: text } : { ok: false, rule },
    schema: z.string({ error: rule }).refine(isHttps, { error: rule }),
    format: (value) => value,
  };
}
