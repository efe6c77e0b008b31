/**
 * The kind of value of passive health's `--outlier-on`: the list of counted failure kinds
 * (`--outlier-on connect,timeout`).
 *
 * @module
 */
import { z } from "zod";
import { OUTLIER_KINDS, type OutlierKind } from "../core/outlier.ts";
import type { Kind } from "./kinds.ts";

const KIND_RULE = `must be a comma list of ${OUTLIER_KINDS.join(", ")}`;

function isOutlierKind(value: string): value is OutlierKind {
  return (OUTLIER_KINDS as readonly string[]).includes(value);
}

/**
 * The failure kinds passive health counts: a flag takes a comma list, the file a list.
 *
 * @returns The kind, rejecting an empty list, an unknown name and a repeated one.
 */
export function outlierKindList(): Kind<readonly OutlierKind[]> {
  const check = (entries: readonly string[]): string | undefined => {
    if (entries.length === 0) return KIND_RULE;
    if (new Set(entries).size !== entries.length) return `${KIND_RULE}, each once`;
    return entries.every(isOutlierKind) ? undefined : KIND_RULE;
  };
  return {
    parse(text) {
      const entries = text.split(",").map((entry) => entry.trim().toLowerCase());
      const rule = check(entries);
      return rule === undefined
        ? { ok: true, value: entries as OutlierKind[] }
        : { ok: false, rule };
    },
    schema: z.array(z.enum(OUTLIER_KINDS, { error: KIND_RULE }), { error: KIND_RULE })
      .superRefine((entries, context) => {
        const rule = check(entries);
        if (rule !== undefined) context.addIssue({ code: "custom", message: rule, input: entries });
      }),
    format: (kinds) => kinds.join(","),
    fileHint: '(a list: ["connect", "timeout"])',
  };
}
