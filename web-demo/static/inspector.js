// The inspector: per destination what arrived, what was deduplicated or dropped
// and why, what is still in the outbox, and the reconciliation against the orders.
const app = document.getElementById('app');
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const eur = (v) => Number(v).toFixed(2);
const pct = (bp) => (bp === null || bp === undefined ? '—' : `${(bp / 100).toFixed(2)} %`);
const table = (id, head, rows) => `<table id="${id}"><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('')}</table>`;
const dupe = (d) => (d ? '<span class="skip">duplicate</span>' : '');

function destinationTables(d) {
  const ga4 = d.ga4, ads = d.google_ads, meta = d.meta, rokt = d.rokt, wh = d['webhook:warehouse'];
  const drops = (list, f) => (list.length ? table('', ['Dropped', 'Why'], list.map(f)) : '<p class="muted">Nothing dropped.</p>');
  return `
  <h2>GA4 — ${ga4.accepted.length} event(s), ${ga4.deduplicated} duplicate(s)</h2>
  ${table('ga4-events', ['Event', 'Client id', 'transaction_id', 'Value', ''], ga4.accepted.map((e) => [esc(e.name), `<code>${esc(e.client_id)}</code>`, `<code>${esc(e.params.transaction_id ?? '')}</code>`, `${esc(e.params.value ?? '')} ${esc(e.params.currency ?? '')}`, dupe(e.duplicate)]))}
  ${drops(ga4.dropped, (x) => [esc(x.code), `${esc(x.field_path)}: ${esc(x.description)}`])}
  <h2>Google Ads — ${ads.accepted.length} conversion(s), ${ads.adjustments.length} adjustment(s), ${ads.deduplicated.length} deduplicated</h2>
  ${table('ads-conversions', ['Order', 'gclid', 'Value', 'Adjusted'], ads.accepted.map((c) => [`<code>${esc(c.order_id)}</code>`, `<code>${esc(c.gclid ?? '')}</code>`, `${esc(c.value)} ${esc(c.currency)}`, c.retracted ? 'retracted' : c.restated_value != null ? `restated to ${esc(c.restated_value)}` : '']))}
  ${drops([...ads.dropped, ...ads.deduplicated], (x) => [esc(x.code), esc(x.message)])}
  <h2>Meta CAPI — ${meta.accepted.length} event(s), ${meta.deduplicated} deduplicated</h2>
  ${table('meta-events', ['Event', 'event_id', 'Value', 'Source URL', ''], meta.accepted.map((e) => [esc(e.event_name), `<code>${esc(e.event_id)}</code>`, `${esc(e.custom_data?.value ?? '')} ${esc(e.custom_data?.currency ?? '')}`, esc(e.event_source_url), dupe(e.duplicate)]))}
  ${drops(meta.dropped, (x) => [esc(x.code), `${esc(x.title)}: ${esc(x.message ?? x.user_msg ?? '')}`])}
  <h2>Rokt — ${rokt.accepted.length} event(s)</h2>
  ${table('rokt-events', ['Type', 'clientEventId', ''], rokt.accepted.map((e) => [esc(e.event_type), `<code>${esc(e.client_event_id)}</code>`, dupe(e.duplicate)]))}
  ${drops(rokt.dropped, (x) => [esc(x.code), esc(x.message)])}
  <h2>Warehouse webhook — ${wh.accepted.length} delivery(ies)</h2>
  ${table('warehouse-events', ['Event', 'event_id', ''], wh.accepted.map((e) => [esc(e.event_name), `<code>${esc(e.event_id)}</code>`, dupe(e.duplicate)]))}
  ${drops(wh.dropped, (x) => [esc(x.status), esc(x.message)])}`;
}

async function render() {
  const data = await (await fetch('/api/inspector')).json();
  const ob = data.outbox;
  app.innerHTML = `<h1>Inspector</h1>
    <h2>Reconciliation against backend orders</h2>
    ${table('reconciliation', ['Destination', 'Cur.', 'Orders', 'Purchases', 'Ratio', 'Backend', 'Destination', 'Mismatch', 'Dupes', 'Consent drops', 'Pending', 'Dead', ''],
      data.reconciliation.rows.map((r) => [esc(r.destination), esc(r.currency), r.orders, r.purchases, pct(r.ratio_bp), eur(r.backend_revenue), eur(r.destination_revenue), pct(r.revenue_mismatch_bp), r.duplicates, r.consent_drops, r.pending, r.dead,
        r.purchases === r.orders && r.revenue_mismatch_bp === 0 ? '<span class="ok">match</span>' : `<span class="bad">${esc([...r.missing.map((m) => `missing ${m}`), ...r.double_counted.map((m) => `counted twice ${m}`)].join(', ') || 'mismatch')}</span>`]))}
    <h2>Outbox</h2><p id="outbox">Queued ${ob.queued ?? '?'} · in flight ${ob.inFlight ?? '?'} · dead ${ob.dead ?? '?'}</p>
    ${ob.byDestination.length ? table('outbox-by-destination', ['Destination', 'Queued', 'In flight', 'Dead'], ob.byDestination.map((d) => [esc(d.destination), d.queued, d.inFlight, d.dead])) : ''}
    ${ob.deadEntries.length ? table('dead', ['Destination', 'Reason'], ob.deadEntries.map((d) => [esc(d.destination), esc(d.reason)])) : ''}
    <h2>Orders (backend truth)</h2>
    ${table('orders', ['Order', 'Total', 'Refunded', 'Status', 'Webhooks', 'Server delivery'], data.orders.map((o) => [esc(o.id), `${(o.totalCents / 100).toFixed(2)} ${esc(o.currency)}`, (o.refundedCents / 100).toFixed(2), esc(o.status), o.webhookDeliveries,
      Object.entries(o.serverOutcomes).map(([d, r]) => `${esc(d)}: <span class="${r.startsWith('sent') ? 'ok' : r.startsWith('skipped') ? 'skip' : 'bad'}">${esc(r)}</span>`).join('<br>')]))}
    ${destinationTables(data.destinations)}`;
  document.body.dataset.ready = '1';
}
render();
setInterval(render, 2000);
