// The inspector: per destination what arrived, what was deduplicated or dropped
// and why, what is still in the outbox, and the reconciliation against the orders.
const app = document.getElementById('app');
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
// Money with the currency's own number of decimals (158.90 EUR, 1200 JPY).
const decimals = (cur) => { try { return new Intl.NumberFormat('en', { style: 'currency', currency: cur }).resolvedOptions().maximumFractionDigits; } catch { return 2; } };
const money = (v, cur) => (v === null || v === undefined || v === '' ? '' : `${Number(v).toFixed(decimals(cur))} ${esc(cur)}`);
const cents = (c, cur) => money(c / 100, cur);
const pct = (bp) => (bp === null || bp === undefined ? '—' : `${(bp / 100).toFixed(2)} %`);
const table = (id, head, rows) => `<div class="scroll"><table id="${id}"><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${rows.map((r) => `<tr>${r.map((c) => (typeof c === 'object' && c !== null ? `<td class="${c.cls}">${c.html}</td>` : `<td>${c}</td>`)).join('')}</tr>`).join('')}</table></div>`;
const dupe = (d) => (d ? '<span class="skip">duplicate</span>' : '');
const outcomeClass = (r) => (r.startsWith('sent') ? 'ok' : r.startsWith('skipped') ? 'skip' : 'bad');
const outcomes = (o) => Object.entries(o).map(([d, r]) => `${esc(d)}: <span class="${outcomeClass(r)}">${esc(r)}</span>`).join('<br>');

// What each reconciliation column means.
const LEGEND = [
  ['Orders', 'backend orders in this currency the destination should count (orders withheld by consent are not expected)'],
  ['Purchases', 'distinct purchases the destination counted (its own duplicates excluded)'],
  ['Ratio', 'purchases ÷ orders'],
  ['Backend', 'net revenue of those orders in the shop (orders minus refunds)'],
  ['Destination', 'net revenue the destination counted (purchases minus the refunds it received)'],
  ['Mismatch', '(destination − backend) ÷ backend'],
  ['Dupes', 'purchases the destination received again and deduplicated itself'],
  ['Withheld (consent)', 'orders not sent there because the shopper declined consent: correct, and reconciled apart'],
  ['Pending', 'purchases and refunds queued in the outbox, not yet at the destination'],
  ['Dead', 'deliveries Tally gave up on (see the dead entries below)'],
];

// What Google said after accepting requests: field warnings, and each
// request's processing result from requestStatus:retrieve.
function adsDiagnostics(diag) {
  if (!diag) return '';
  const counts = diag.counts.length
    ? table('ads-diagnostics', ['Kind', 'Reason', 'Count'], diag.counts.map((c) => [esc(c.kind), `<code>${esc(c.reason)}</code>`, c.count]))
    : '<p class="muted">No field warnings or processing results yet.</p>';
  const recent = diag.recent.length
    ? table('ads-requests', ['Request', 'Events', 'Status', 'Errors'], diag.recent.map((r) => [`<code>${esc(r.request_id)}</code>`, r.events, esc(r.status), esc(r.errors.map(([why, n]) => `${n} ${why}`).join(', '))]))
    : '';
  return `<h3>Diagnostics — ${diag.pending} request(s) still processing</h3>${counts}${recent}`;
}

function destinationTables(d) {
  const ga4 = d.ga4, ads = d.google_ads, meta = d.meta, rokt = d.rokt, wh = d['webhook:warehouse'];
  const drops = (list, f) => (list.length ? table('', ['Dropped', 'Why'], list.map(f)) : '<p class="muted">Nothing dropped.</p>');
  return `
  <h2>GA4 — ${ga4.accepted.length} event(s), ${ga4.deduplicated} duplicate(s)</h2>
  ${table('ga4-events', ['Event', 'Client id', 'transaction_id', 'Value', ''], ga4.accepted.map((e) => [esc(e.name), `<code>${esc(e.client_id)}</code>`, `<code>${esc(e.params.transaction_id ?? '')}</code>`, money(e.params.value, e.params.currency ?? ''), dupe(e.duplicate)]))}
  ${drops(ga4.dropped, (x) => [esc(x.code), `${esc(x.field_path)}: ${esc(x.description)}`])}
  <h2>Google Ads (Data Manager API) — ${ads.accepted.length} conversion(s), ${ads.restatements} restatement(s), ${ads.adjustments.length} retraction(s) through the Google Ads API</h2>
  ${table('ads-conversions', ['transactionId', 'gclid', 'Value', 'Adjusted'], ads.accepted.map((c) => [`<code>${esc(c.transaction_id ?? '')}</code>`, `<code>${esc(c.gclid ?? '')}</code>`, money(c.first_value, c.currency), c.retracted ? 'retracted' : c.value !== c.first_value ? `restated to ${money(c.value, c.currency)}` : '']))}
  ${drops(ads.dropped, (x) => [esc(x.status), esc([x.message, ...x.violations.map((v) => `${v.reason ?? ''} ${v.field ?? ''}`)].join('; '))])}
  ${adsDiagnostics(ads.diagnostics)}
  <h2>Meta CAPI — ${meta.accepted.length} event(s), ${meta.deduplicated} deduplicated</h2>
  ${table('meta-events', ['Event', 'event_id', 'Value', 'Source URL', ''], meta.accepted.map((e) => [esc(e.event_name), `<code>${esc(e.event_id)}</code>`, money(e.custom_data?.value, e.custom_data?.currency ?? ''), esc(e.event_source_url), dupe(e.duplicate)]))}
  ${drops(meta.dropped, (x) => [esc(x.code), `${esc(x.title)}: ${esc(x.message ?? x.user_msg ?? '')}`])}
  <h2>Rokt — ${rokt.accepted.length} event(s)</h2>
  ${table('rokt-events', ['Type', 'clientEventId', ''], rokt.accepted.map((e) => [esc(e.event_type), `<code>${esc(e.client_event_id)}</code>`, dupe(e.duplicate)]))}
  ${drops(rokt.dropped, (x) => [esc(x.code), esc(x.message)])}
  <h2>Warehouse webhook — ${wh.accepted.length} delivery(ies)</h2>
  ${table('warehouse-events', ['Event', 'event_id', ''], wh.accepted.map((e) => [esc(e.event_name), `<code>${esc(e.event_id)}</code>`, dupe(e.duplicate)]))}
  ${drops(wh.dropped, (x) => [esc(x.status), esc(x.message)])}`;
}

function page(data) {
  const ob = data.outbox;
  const status = (r) => (r.matches
    ? { cls: 'status', html: `<span class="ok">match</span>${r.withheld_by_consent.length ? ' <span class="skip">(withheld by consent excluded)</span>' : ''}` }
    : { cls: 'status', html: `<span class="bad">${esc(r.problems.join('; '))}</span>` });
  const st = data.serverTracker;
  return `<h1>Inspector</h1>
    <p id="server-tracker" data-path="${esc(st.path)}">Server-side confirmations (payment webhook, refunds): <strong>${esc(st.path)}</strong> — ${esc(st.description)}${st.url ? ` at <code>${esc(st.url)}</code>` : ''}.</p>
    <h2>Reconciliation against backend orders</h2>
    ${table('reconciliation', ['Destination', 'Cur.', 'Orders', 'Purchases', 'Ratio', 'Backend', 'Destination', 'Mismatch', 'Dupes', 'Withheld (consent)', 'Pending', 'Dead', 'Status'],
      data.reconciliation.rows.map((r) => [esc(r.destination), esc(r.currency), r.orders, r.purchases, pct(r.ratio_bp), esc(r.backendMoney), esc(r.destinationMoney), pct(r.revenue_mismatch_bp), r.duplicates,
        { cls: 'withheld', html: esc(r.withheldText) }, r.pending, r.dead, status(r)]))}
    <dl class="legend" id="legend">${LEGEND.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl>
    <h2>Tally's own counts</h2>
    <p class="muted">What Tally itself did per destination since the shop started (also on <a href="/metrics">/metrics</a>): deliveries confirmed, retries, events it did not send again because the same purchase was already delivered, and drops.</p>
    ${table('tally-counts', ['Destination', 'Delivered', 'Retried', 'Deduplicated by Tally', 'Dropped'], data.tally.map((t) => [esc(t.destination), t.delivered, t.retried, t.duplicates,
      t.dropped ? esc(Object.entries(t.droppedBy).map(([why, n]) => `${n} ${why}`).join(', ')) : 0]))}
    <h2>Outbox</h2><p id="outbox">Queued ${ob.queued ?? '?'} · in flight ${ob.inFlight ?? '?'} · dead ${ob.dead ?? '?'}</p>
    ${ob.byDestination.length ? table('outbox-by-destination', ['Destination', 'Queued', 'In flight', 'Dead'], ob.byDestination.map((d) => [esc(d.destination), d.queued, d.inFlight, d.dead])) : ''}
    ${ob.deadEntries.length ? table('dead', ['Destination', 'Reason'], ob.deadEntries.map((d) => [esc(d.destination), esc(d.reason)])) : ''}
    <h2>Orders (backend truth)</h2>
    ${table('orders', ['Order', 'Total', 'Refunded', 'Status', 'Webhooks', 'Purchase delivery', 'Refund delivery'], data.orders.map((o) => [esc(o.id), cents(o.totalCents, o.currency), cents(o.refundedCents, o.currency), esc(o.status), o.webhookDeliveries,
      (o.confirmedVia ? `<span class="muted">via ${esc(o.confirmedVia)}</span><br>` : '') + outcomes(o.serverOutcomes)
        + (o.serverError ? `<br><span class="bad">not reported: ${esc(o.serverError)}</span>` : ''), { cls: 'refund-outcomes', html: outcomes(o.refundOutcomes ?? {}) }]))}
    ${destinationTables(data.destinations)}`;
}

// Re-rendered only when the data changed, and never while text on the page is
// selected (a new render would drop the selection); it catches up afterwards.
let shown = '';
async function refresh() {
  const text = await (await fetch('/api/inspector')).text();
  if (text === shown) return;
  if (shown && !document.getSelection().isCollapsed) return;
  shown = text;
  app.innerHTML = page(JSON.parse(text));
  document.body.dataset.ready = '1';
}
refresh();
setInterval(refresh, 2000);
