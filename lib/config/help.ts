/**
 * `lb --help`: a fixed introduction and examples around the flags, their help and defaults, and
 * the config file's keys, all derived from {@linkcode SETTINGS}.
 *
 * @module
 */
import { CONFIG_FLAG } from "./flags.ts";
import { isSetting, LONGEST_DURATION, SECTIONS, settingEntries, SETTINGS } from "./settings.ts";
import { DEFAULT_BALANCER_CONFIG } from "./layers.ts";

/** Column where a flag's description starts; the width lines wrap at. */
const DESCRIPTION_COLUMN = 31;
const WIDTH = 99;

const D = DEFAULT_BALANCER_CONFIG;
const DEFAULT_PERIOD_SECONDS = D.health.intervalMs / 1000;

/** The `lb` subcommand's help text: every flag, its default, the file's keys and examples. */
export const LB_HELP: string = `Usage: denolb lb [options] [health_check_period_seconds]
       deno task lb [options] [health_check_period_seconds]
       denolb lb check-config FILE [options]   (validate a config file; exit 0 or 2)

Balances HTTP requests over backends (round-robin over the healthy ones) and probes their health.
With no arguments it behaves as the original Python balancer: listens on ${D.host}:${D.port}
and balances over http://127.0.0.1:8080, :8081 and :8082, probing GET ${D.health.path} every
${DEFAULT_PERIOD_SECONDS} seconds.

Arguments:
${
  item(
    "health_check_period_seconds",
    "Seconds between health probes; values below 1 become 1. " +
      `Default: ${DEFAULT_PERIOD_SECONDS}. --health-interval overrides it.`,
  )
}

${SECTIONS.map(sectionHelp).join("\n")}
Other:
${
  item(
    `--${CONFIG_FLAG} FILE`,
    "JSON file with any of these settings; flags override it. Keys: " +
      `${fileKeys(SETTINGS)}. Times are in milliseconds, sizes in bytes.`,
  )
}
${item("-h, --help", "Show this help")}

Durations are written 250ms, 5s, 1m or 1m30s; a bare number means seconds, everywhere. A duration
is at most ${LONGEST_DURATION}, the longest a timer can wait. Sizes are written 512 (bytes), 64KB or 1MB
(powers of 1000), 64KiB or 1MiB (powers of 1024).

Examples:
  deno task lb                  # as the original: 127.0.0.1:9090 over :8080-:8082, every 10 s
  deno task lb 5                # probe every 5 seconds
  deno task lb --port 8000 --backend 10.0.0.1:80,10.0.0.2:80 --health-interval 2s --fall 2
  deno task lb --header-timeout 5s --request-buffer 64KB --timeout 10s
  LOGLEVEL=DEBUG deno task lb --log-format json --log-file lb.log
  deno task lb --config lb.json --port 0
`;

/** One section: its title and each of its flags with help and default. */
function sectionHelp(section: string): string {
  const lines = settingEntries()
    .filter(({ setting }) => setting.section === section)
    .map(({ setting }) => {
      const defaultText = setting.defaultHelp ??
        ("default" in setting ? setting.kind.format(setting.default) : undefined);
      return item(
        `--${setting.flag} ${setting.metavar}`,
        setting.help + (defaultText === undefined ? "" : ` Default:\u00a0${defaultText}`),
      );
    });
  return `${section}:\n${lines.join("\n")}\n`;
}

/** The file's keys: `host, port, health {path, intervalMs}, ...`. */
function fileKeys(group: object): string {
  return Object.entries(group).map(([key, node]) =>
    isSetting(node)
      ? (node.kind.fileHint === undefined ? key : `${key} ${node.kind.fileHint}`)
      : `${key} {${fileKeys(node)}}`.replaceAll(" ", "\u00a0")
  ).join(", ");
}

/**
 * A term and its description wrapped beside it. "Default:" is bound to its value by a
 * no-break space so the two never part; a word too long for a line gets a line of its own.
 */
function item(term: string, description: string): string {
  const indent = " ".repeat(DESCRIPTION_COLUMN);
  const lines: string[] = [];
  let line = `  ${term}`.padEnd(DESCRIPTION_COLUMN - 1);
  if (line.length >= DESCRIPTION_COLUMN) {
    lines.push(line);
    line = indent.slice(1);
  }
  for (const word of description.split(" ")) {
    if (line.length + 1 + word.length > WIDTH && line.trim() !== "") {
      lines.push(line);
      line = indent.slice(1);
    }
    line += ` ${word}`;
  }
  lines.push(line);
  return lines.join("\n").replaceAll("\u00a0", " ");
}
