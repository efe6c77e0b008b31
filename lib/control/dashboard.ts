/**
 * The admin listener's live dashboard: one self-contained page ({@linkcode DASHBOARD_HTML}) and
 * the server-sent event stream it reads ({@linkcode statusEventStream}). The page knows only
 * relative URLs (`events`, `backends/{name}/drain`), so it works wherever the admin listener
 * mounts it.
 *
 * @module
 */
import { type Clock, systemClock } from "../shared/clock.ts";

/** Response headers for {@linkcode statusEventStream}'s body. */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-store",
};

/** Options of {@linkcode statusEventStream}. */
export interface StatusEventStreamOptions {
  /** Time between two snapshots, in milliseconds. */
  readonly intervalMs: number;
  /** The clock the interval is measured on. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
  /** Ends the stream when it aborts (the request's signal). Default: only a cancel ends it. */
  readonly signal?: AbortSignal;
}

/**
 * A server-sent event body (`data: <JSON>\n\n`): one snapshot at once, then one every
 * `intervalMs`. The next snapshot is taken only once the previous one was read, so a slow client
 * gets fresh snapshots late rather than a growing queue of stale ones. Ends (closes) when
 * `signal` aborts, or when the reader cancels; either way no sleep is left pending.
 *
 * @param snapshot Called for each event; its result is sent as JSON (e.g. the `/status` report).
 * @param options Interval, clock and end signal.
 * @returns The response body; pair it with {@linkcode SSE_HEADERS}.
 * @throws {RangeError} When `intervalMs` is not a positive finite number.
 */
export function statusEventStream(
  snapshot: () => unknown,
  options: StatusEventStreamOptions,
): ReadableStream<Uint8Array> {
  const { intervalMs, clock = systemClock, signal } = options;
  if (!(intervalMs > 0 && Number.isFinite(intervalMs))) {
    throw new RangeError(
      `Invalid event interval "${intervalMs}": must be a positive number of milliseconds`,
    );
  }
  const encoder = new TextEncoder();
  // Aborted on the caller's signal and on cancel: it is what wakes a pending sleep.
  const stop = new AbortController();
  let isFirst = true;
  let isClosed = false;
  let onAbort = (): void => {};
  const finish = (): void => {
    isClosed = true;
    signal?.removeEventListener("abort", onAbort);
    stop.abort();
  };
  return new ReadableStream<Uint8Array>({
    start(controller): void {
      if (signal?.aborted) {
        finish();
        controller.close();
        return;
      }
      onAbort = (): void => {
        // A pull may not be pending (the client has not read the last event yet), so close here.
        if (!isClosed) controller.close();
        finish();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    },
    async pull(controller): Promise<void> {
      if (isClosed) return;
      if (isFirst) {
        isFirst = false;
      } else {
        try {
          await clock.sleep(intervalMs, stop.signal);
        } catch {
          // Only `stop` rejects the sleep: the stream was cancelled or closed meanwhile.
          return;
        }
      }
      if (isClosed) return;
      let data: string;
      try {
        data = JSON.stringify(snapshot());
      } catch (error) {
        finish();
        controller.error(error);
        return;
      }
      // JSON.stringify never emits a raw line break, so the event is one `data:` line.
      controller.enqueue(encoder.encode(`data: ${data}\n\n`));
    },
    cancel(): void {
      finish();
    },
  });
}

/**
 * The dashboard page: every backend's state (colour-coded), weight, in-flight, req/s, p50/p99,
 * and two error rates named apart (5xx responses the backend sent; requests it failed to answer,
 * which the balancer answered 502/504 or retried), with the same two over the whole pool, and
 * whether the balancer drains; live from `events`, flips highlighted, with
 * drain/undrain buttons. Inline CSS and script only. A `#token=...` fragment is sent as a bearer
 * token on every POST and as `?token=` on the event stream (an `EventSource` cannot send
 * headers); a fragment never reaches server logs.
 */
export const DASHBOARD_HTML: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Balancer dashboard</title>
<link rel="icon" href="data:,">
<style>
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700;
  --muted: #6e7781; --line: #d0d7de; --flash: #fff8c5; }
* { box-sizing: border-box; }
body { font: 15px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; padding: 1rem;
  max-width: 72rem; margin-inline: auto; }
h1 { font-size: 1.3rem; margin: 0 0 .5rem; }
h2 { font-size: 1rem; margin: 1.25rem 0 .4rem; }
.summary { display: flex; flex-wrap: wrap; gap: .4rem 1rem; align-items: center; margin-bottom: .75rem; }
.muted { color: var(--muted); }
.badge { display: inline-block; padding: .1rem .55rem; border-radius: 1rem; font-weight: 600;
  font-size: .85rem; color: #fff; background: var(--muted); }
.badge.healthy, .badge.serving { background: var(--ok); }
.badge.unhealthy { background: var(--bad); }
.badge.draining { background: var(--warn); }
.badge.ejected { background: var(--bad); }
#error { color: var(--bad); font-weight: 600; min-height: 1.4em; margin: .25rem 0; }
table { width: 100%; border-collapse: collapse; }
th, td { padding: .45rem .5rem; border-bottom: 1px solid var(--line); text-align: right;
  white-space: nowrap; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
th { font-size: .8rem; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
td.name { font-family: ui-monospace, monospace; }
tr.pool-start td { border-top: 2px solid var(--muted, #888); }
td.pool { font-weight: 600; }
table:not(.pooled) .pool { display: none; }
tr[data-state="unhealthy"] td.name, tr[data-state="ejected"] td.name { color: var(--bad); }
tr.flipped td { background: var(--flash); color: #24292f; transition: background .3s; }
button { font: inherit; padding: .25rem .8rem; border-radius: .4rem; border: 1px solid var(--line);
  background: transparent; color: inherit; cursor: pointer; min-height: 2rem; }
button:disabled { opacity: .5; cursor: wait; }
#changes { list-style: none; padding: 0; margin: 0; font-size: .9rem; }
#changes li { padding: .15rem 0; border-bottom: 1px dashed var(--line); }
#changes time { color: var(--muted); margin-right: .5rem; font-variant-numeric: tabular-nums; }
td { font-variant-numeric: tabular-nums; }
@media (max-width: 640px) {
  body { padding: .6rem; }
  thead { display: none; }
  table, tbody, tr, td { display: block; width: 100%; }
  tr { border: 1px solid var(--line); border-radius: .5rem; margin-bottom: .6rem; padding: .3rem .6rem; }
  td { display: flex; justify-content: space-between; border: 0; padding: .2rem 0; text-align: right; }
  td:first-child, td:nth-child(2) { text-align: right; }
  td::before { content: attr(data-label); color: var(--muted); font-size: .85rem; margin-right: 1rem;
    font-family: system-ui, sans-serif; }
  td.name { font-weight: 600; justify-content: flex-start; font-size: 1rem; }
  td.name::before, td.action::before { content: none; }
  td.action { justify-content: flex-end; }
}
</style>
</head>
<body>
<h1>Balancer dashboard</h1>
<div class="summary">
  <span>Balancer: <span id="balancer" class="badge">connecting</span></span>
  <span id="healthy" class="muted"></span>
  <span id="connection" class="muted">connecting…</span>
  <span id="updated" class="muted"></span>
  <span id="errors" class="muted"></span>
  <span id="dns" class="muted"></span>
</div>
<p id="error" role="alert"></p>
<table>
  <thead><tr><th class="pool">Pool</th><th>Backend</th><th>State</th><th>Weight</th><th>In-flight</th><th>req/s</th>
    <th>p50 ms</th><th>p99 ms</th><th title="5xx responses the backend sent">5xx</th>
    <th title="requests the backend did not answer (refused, timed out, broken)">Failed</th>
    <th></th></tr></thead>
  <tbody id="backends"></tbody>
</table>
<h2>Recent changes</h2>
<ul id="changes"><li class="muted" id="no-changes">None yet</li></ul>
<script>
"use strict";
(function () {
  var FLASH_MS = 5000;
  var MAX_CHANGES = 20;
  var COLUMNS = [
    ["pool", "Pool"], ["name", "Backend"], ["state", "State"], ["weight", "Weight"], ["inflight", "In-flight"],
    ["rate", "req/s"], ["p50", "p50 ms"], ["p99", "p99 ms"], ["responses5xx", "5xx"],
    ["failures", "Failed"], ["action", ""]
  ];
  var token = new URLSearchParams(location.hash.slice(1)).get("token");
  var tokenQuery = token ? "?token=" + encodeURIComponent(token) : "";
  var tbody = document.getElementById("backends");
  var rows = new Map();
  var previous = null;
  var wasDraining = null;

  function byId(id) { return document.getElementById(id); }
  // Passive health's ejection shows beside active health: a healthy backend ejected is "ejected".
  function stateOf(b) {
    return b.isDraining ? "draining" : b.health === "healthy" && b.ejected ? "ejected" : b.health;
  }
  function ejectionOf(b) {
    if (!b.ejected) return "";
    return "ejected after " + b.ejected.reason + " failures until " + clock(b.ejected.untilMs) +
      " (" + b.ejected.count + " in a row)";
  }
  function clock(ms) { return new Date(ms).toLocaleTimeString(); }
  function ms(value) {
    if (typeof value !== "number") return "–";
    return value < 10 ? value.toFixed(1) : String(Math.round(value));
  }
  function showError(text) { byId("error").textContent = text; }

  function addChange(atMs, text) {
    var none = byId("no-changes");
    if (none) none.remove();
    var list = byId("changes");
    var item = document.createElement("li");
    var time = document.createElement("time");
    time.textContent = clock(atMs);
    item.append(time, document.createTextNode(text));
    list.prepend(item);
    while (list.children.length > MAX_CHANGES) list.lastElementChild.remove();
  }

  function newRow(name) {
    var tr = document.createElement("tr");
    tr.dataset.backend = name;
    var cells = {};
    COLUMNS.forEach(function (column) {
      var td = document.createElement("td");
      td.className = column[0];
      td.dataset.label = column[1];
      tr.append(td);
      cells[column[0]] = td;
    });
    cells.name.textContent = name;
    var badge = document.createElement("span");
    badge.className = "badge";
    cells.state.append(badge);
    var button = document.createElement("button");
    button.type = "button";
    button.addEventListener("click", function () { act(name, button); });
    cells.action.append(button);
    return { tr: tr, cells: cells, badge: badge, button: button, timer: 0, state: null };
  }

  function flash(row) {
    row.tr.classList.add("flipped");
    clearTimeout(row.timer);
    row.timer = setTimeout(function () { row.tr.classList.remove("flipped"); }, FLASH_MS);
  }

  function act(name, button) {
    var action = button.dataset.action;
    var headers = token ? { Authorization: "Bearer " + token } : {};
    button.disabled = true;
    fetch("backends/" + encodeURIComponent(name) + "/" + action, { method: "POST", headers: headers })
      .then(function (response) {
        if (response.ok) {
          showError("");
          return;
        }
        return response.text().then(function (body) {
          showError(action + " " + name + " failed: " + response.status + " " +
            response.statusText + (body ? " (" + body.trim().slice(0, 200) + ")" : ""));
        });
      })
      .catch(function (error) { showError(action + " " + name + " failed: " + error.message); })
      .finally(function () { button.disabled = false; });
  }

  // Shares of the requests since the last snapshot: a backend's own 5xx answers, and the
  // requests it did not answer (the balancer's 502/504 or a retry), named apart.
  function rates(b, before, dtMs) {
    var fresh = { rate: "–", responses5xx: "–", failures: "–" };
    if (!before || dtMs <= 0 || b.requests < before.requests || b.failures < before.failures ||
      (b.responses5xx || 0) < (before.responses5xx || 0)) {
      return fresh;
    }
    var requests = b.requests - before.requests;
    function share(count) {
      return requests > 0 ? (count * 100 / requests).toFixed(1) + "%" : "–";
    }
    return {
      rate: (requests * 1000 / dtMs).toFixed(1),
      responses5xx: share((b.responses5xx || 0) - (before.responses5xx || 0)),
      failures: share(b.failures - before.failures)
    };
  }

  function render(snapshot) {
    var draining = snapshot.draining === true;
    var balancer = byId("balancer");
    balancer.textContent = draining ? "draining" : "serving";
    balancer.className = "badge " + (draining ? "draining" : "serving");
    if (wasDraining !== null && wasDraining !== draining) {
      addChange(snapshot.atMs, "balancer " + (draining ? "started draining" : "stopped draining"));
    }
    wasDraining = draining;
    var backends = Array.isArray(snapshot.backends) ? snapshot.backends : [];
    tbody.parentElement.classList.toggle("pooled", backends.some(function (b) { return b.pool; }));
    byId("healthy").textContent = snapshot.healthy + " of " + backends.length + " taking traffic";
    byId("updated").textContent = "updated " + clock(snapshot.atMs);
    var before = new Map();
    if (previous) previous.backends.forEach(function (b) { before.set(b.name, b); });
    var dtMs = previous ? snapshot.atMs - previous.atMs : 0;
    var seen = new Set();
    backends.forEach(function (b, index) {
      seen.add(b.name);
      var row = rows.get(b.name);
      if (!row) {
        row = newRow(b.name);
        rows.set(b.name, row);
        if (previous) addChange(snapshot.atMs, b.name + ": added");
      }
      if (tbody.children[index] !== row.tr) tbody.insertBefore(row.tr, tbody.children[index] || null);
      var state = stateOf(b);
      if (row.state !== null && row.state !== state) {
        flash(row);
        addChange(snapshot.atMs, b.name + ": " + row.state + " → " + state);
      }
      row.state = state;
      row.tr.dataset.state = state;
      row.badge.textContent = state;
      row.badge.className = "badge " + state;
      row.badge.title = ejectionOf(b);
      row.cells.name.title = b.url;
      // Backends come grouped by pool: the pool is named on the first row of its group.
      var isFirstOfPool = index === 0 || backends[index - 1].pool !== b.pool;
      row.cells.pool.textContent = isFirstOfPool && b.pool ? b.pool : "";
      row.tr.classList.toggle("pool-start", isFirstOfPool && index > 0 && Boolean(b.pool));
      row.cells.weight.textContent = String(b.weight);
      row.cells.inflight.textContent = String(b.inFlight);
      var r = rates(b, before.get(b.name), dtMs);
      row.cells.rate.textContent = r.rate;
      row.cells.responses5xx.textContent = r.responses5xx;
      row.cells.failures.textContent = r.failures;
      row.cells.p50.textContent = ms(b.p50Ms);
      row.cells.p99.textContent = ms(b.p99Ms);
      var action = b.isDraining ? "undrain" : "drain";
      if (row.button.dataset.action !== action) {
        row.button.dataset.action = action;
        row.button.textContent = b.isDraining ? "Undrain" : "Drain";
      }
    });
    rows.forEach(function (row, name) {
      if (!seen.has(name)) {
        clearTimeout(row.timer);
        row.tr.remove();
        rows.delete(name);
        addChange(snapshot.atMs, name + ": removed");
      }
    });
    var total = rates(snapshot, previous && previous.totals, dtMs);
    byId("errors").textContent = total.rate === "–" ? "" : "pool: backend 5xx " +
      total.responses5xx + ", failed " + total.failures + ", no backend " +
      Math.max(0, (snapshot.noBackend || 0) - ((previous && previous.totals.noBackend) || 0));
    byId("dns").textContent = (snapshot.discovery || []).map(function (d) {
      return "DNS " + d.name + ": " + d.state + " (" + d.backends.length + ")" +
        (d.error ? " " + d.error + ", keeping the last good set" : "");
    }).join("; ");
    previous = { atMs: snapshot.atMs, backends: backends, totals: snapshot };
  }

  var events = new EventSource("events" + tokenQuery);
  events.onopen = function () { byId("connection").textContent = "live"; };
  events.onerror = function () { byId("connection").textContent = "reconnecting…"; };
  events.onmessage = function (event) {
    try {
      render(JSON.parse(event.data));
    } catch (error) {
      showError("Bad status event: " + error.message);
    }
  };
})();
</script>
</body>
</html>
`;
