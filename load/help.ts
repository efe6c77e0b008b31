/**
 * The help text of `loadtest`: the flags with their help and defaults, derived from
 * {@linkcode LOADTEST_FLAG_SECTIONS}, around a fixed introduction, `merge`, the exit codes and
 * examples. Kept out of `cli.ts` so the command reads as code; `cli.ts` re-exports it for
 * `main.ts`.
 *
 * @module
 */
import { flagSynopsis, LOADTEST_FLAG_SECTIONS, type LoadtestFlagSection } from "./flag_table.ts";

/** Column where a flag's description starts; the width lines wrap at. */
const DESCRIPTION_COLUMN = 26;
const WIDTH = 94;

/** The full help of `loadtest`. */
export const LOADTEST_HELP: string = `Usage: loadtest [flags]
       loadtest merge FILE.json... [output and threshold flags]
       loadtest schema

Sends load to one URL and reports throughput, latency percentiles (HdrHistogram), errors by
class and status, and a capacity estimate.

Every request is counted once, as the target saw it: a request that fails is an error in its
class (a reset is a reset), never silently sent again. Only when the server had closed an idle
kept-alive connection and its close was seen before the request was written does the request
go on a new connection; the report shows these as "Resent". Nothing is sent that was not
asked for: no probe, no extra warm-up.

Latency counts what users waited. Timeouts enter it at their timeout, requests in flight when
a run ends with the time they had waited, and open-model requests never sent with their
lateness at the end; these lower bounds are "censored" samples (wrk2's and HdrHistogram's
practice), named in the report and seen by the thresholds.

${LOADTEST_FLAG_SECTIONS.map(sectionHelp).join("\n")}
Merge:
  loadtest merge a.json b.json ...   Combine runs made at the same time on several
                          machines (each with --json) into one report: counts and levels
                          add up, histograms merge exactly
  loadtest schema         Print the JSON Schema of the --json report

Durations: a bare number is seconds in every flag (--timeout 4, --max-p99 0.2); give a
unit for anything else: 250ms, 5s, 1m, 1m30s.

Exit codes: 0 ok; 1 threshold breached, a run in which nothing succeeded, interrupted, or
no capacity found; 2 bad flags or an output path that cannot be written.

Examples:
  loadtest --url http://127.0.0.1:9090/ --total 800 --concurrency 25 50 100 150 200 250 \\
    --rounds 2 --timeout 4
  loadtest --url http://127.0.0.1:9090/ --rate 500 --duration 30s --warmup 5s --chart rate.svg
  loadtest --duration 20s -c 100 --max-error-rate 0.01 --max-p99 200ms --json ci.json
  loadtest --stages 30s:100,1m:500,30s:0 --threshold 'p95<200ms' --threshold 'errors<1%'
  loadtest --find-capacity -c 16 --duration 10s --max-p99 250ms
  loadtest merge host-a.json host-b.json --markdown
`;

/** One section: its title, each flag with help and default, and its note. */
function sectionHelp(section: LoadtestFlagSection): string {
  const lines = section.flags.map((flag) =>
    item(
      flagSynopsis(flag),
      flag.help + (flag.default === undefined ? "" : ` Default:\u00a0${flag.default}`),
    )
  );
  const note = section.note === undefined ? [] : [wrap(section.note, "  ")];
  return `${section.title}:\n${[...lines, ...note].join("\n")}\n`;
}

/** A term and its description wrapped beside it; a long term gets a line of its own. */
function item(term: string, description: string): string {
  let first = `  ${term}`.padEnd(DESCRIPTION_COLUMN);
  const lines: string[] = [];
  if (first.length > DESCRIPTION_COLUMN) {
    lines.push(first.trimEnd());
    first = " ".repeat(DESCRIPTION_COLUMN);
  }
  const body = wrap(description, " ".repeat(DESCRIPTION_COLUMN));
  lines.push(first + body.slice(DESCRIPTION_COLUMN));
  return lines.join("\n");
}

/** Words wrapped at {@linkcode WIDTH}, each line starting with `indent`. */
function wrap(text: string, indent: string): string {
  const lines: string[] = [];
  let line = indent;
  for (const word of text.split(" ")) {
    if (line.length + 1 + word.length > WIDTH && line.trim() !== "") {
      lines.push(line.trimEnd());
      line = indent;
    }
    line += line.trim() === "" ? word : ` ${word}`;
  }
  lines.push(line);
  return lines.join("\n").replaceAll("\u00a0", " ");
}
