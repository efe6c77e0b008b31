/**
 * The help text of `loadtest`: every flag with its default, the exit codes and examples, kept
 * out of `cli.ts` so the command reads as code. `cli.ts` re-exports it for `main.ts`.
 *
 * @module
 */

/** The full help of `loadtest`. */
export const LOADTEST_HELP = `Usage: loadtest [flags]
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

Target and request:
  --url URL               Target (http or https). Default: http://127.0.0.1:9090/
  --method METHOD         HTTP method. Default: GET
  -H, --header "N: V"     Request header; repeatable
  --body TEXT             Request body
  --body-file PATH        Request body read from a file
  --targets FILE          Mixed traffic from a vegeta-format file: blank-line separated
                          targets of "METHOD URL", header lines and an optional @body-file
                          line; "# weight: N" weights a target (default: take turns).
                          -H headers apply to every target. Replaces --url, --method, --body
  --timeout DURATION      Per-request timeout, to the end of the body; a bare number is
                          seconds (as the seed's --timeout 4). Default: 5s
  --no-keepalive          A new connection per request (as the seed's requests.get).
                          Default: keep-alive
  --success STATUSES      Statuses that count as success: codes, classes, ranges.
                          Default: 2xx,3xx (a 5xx is an error)

Load (closed model, as the seed; while the target stalls, its users wait instead of
arriving, so a stall barely moves the percentiles: a run whose max is far above its p99.9
says so; use --rate to see what arriving users would wait):
  -c, --concurrency N...  Concurrency levels, space- or comma-separated: 25 50 100 or
                          25,50,100. Each level runs --rounds times. Default: 50
  --total N               Requests per run. Default: 200
  --duration DURATION     Run for a time instead of --total; requests still in flight at
                          the end enter the latency with the time they had waited (not
                          waited for)
  --rounds N              Runs per level. Default: 1
  --warmup DURATION       Unrecorded warm-up at the first level before measuring

Load (open model):
  --rate R...             Constant arrival rates in requests/s, space- or comma-separated.
                          A request that waited for a free slot under --max-in-flight is
                          timed from its planned start (no coordinated omission); the
                          generator's own lateness (timers, CPU) is measured apart and kept
                          out of the latency, and when the generator fell behind the report
                          says so. Use with --duration (or --total)
  --stages D:R,...        Ramping arrival rate (k6's ramping-arrival-rate): each stage moves
                          the rate linearly from the previous target (0 at the start) to R
                          req/s over D, e.g. 30s:100,1m:500,30s:0; replaces --rate and
                          --duration, timed from each request's intended start as --rate
  --max-in-flight N       Cap on requests in flight. Default: rate x timeout, at most 1000
                          and at most the open-files limit less 64 (from /proc/self/limits);
                          a run that reaches the cap and runs late says so

Scale:
  --workers N             Web Workers to spread the load over. Default, decided without
                          sending anything: 1 for runs under 20000 requests; else half
                          the cores when the target is on this machine (it needs CPU
                          too: 1 on 2 cores), one per core when it is elsewhere; never
                          more than the lowest concurrency, or one per 20000 req/s of
                          rate. The header line says which rule decided
  --transport MODE        auto (lean HTTP/1.1 client for http, fetch for https), fetch or
                          http1. Default: auto

Output (paths are checked before the run starts):
  --json FILE             Full results: per run the label (c25-r1), counts, errors by
                          class, rps, meanMs, p50Ms ... p999Ms, maxMs (null, shown as n/a,
                          when nothing succeeded) and the encoded histogram (input of merge).
                          "-" writes it to stdout and moves the text report to stderr
  --csv FILE              One row per run; "-" for stdout, as --json
  --markdown              Print the report as Markdown
  --chart FILE.svg        Throughput and p50/p95/p99 against concurrency or rate (against
                          time for a single rate run); SVG only
  --html FILE.html        One self-contained page: settings, summary, charts, and each run
                          with its histogram and status distribution
  --quiet                 No live view or progress lines
  While a run goes, stderr shows elapsed time, req/s, errors by class and rolling p50/p99:
  one line redrawn in place on a terminal, a plain line every 5s otherwise.

Thresholds (exit 1 when breached, with a line saying which and by how much):
  --max-error-rate X      Highest share of failed requests: 0.01 or 1%
  --max-p99 DURATION      Highest p99 latency, such as 200ms (a bare number is seconds, so
                          --max-p99 200 is 200s and earns a warning)
  --threshold RULE        A rule on any statistic, repeatable (as k6): STAT OP LIMIT with
                          STAT mean, p50, p90, p95, p99, p99.9, max, rps or errors and OP
                          < <= > >=: 'p95<200ms', 'errors<1%', 'rps>=1000'. Checked
                          against every run; n/a (nothing succeeded) never passes
  --find-capacity         Ramp from the first level (x2 each step) until errors (over
                          --max-error-rate, default any), unsent requests or --max-p99,
                          bisect, and report the highest level that held; the thresholds
                          then judge levels instead of failing the command

Merge:
  loadtest merge a.json b.json ...   Combine runs made at the same time on several
                          machines (each with --json) into one report: counts and levels
                          add up, histograms merge exactly
  loadtest schema         Print the JSON Schema of the --json report

Durations: a bare number is seconds in every flag (--timeout 4, --max-p99 0.2); give a
unit for anything else: 250ms, 5s, 1m, 1m30s.

  -h, --help              Show this help

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
