// The inspector: what every sandbox destination received, and the backend's orders.
const app = document.getElementById('app');
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

async function render() {
  const data = await (await fetch('/api/inspector')).json();
  const ga4 = data.destinations.ga4;
  app.innerHTML = `<h1>Inspector</h1>
    <h2>Orders (backend truth)</h2>
    <table id="orders"><tr><th>Order</th><th>Total</th><th>Status</th><th>Webhooks</th><th>Server delivery</th></tr>
    ${data.orders.map((o) => `<tr><td>${esc(o.id)}</td><td>${(o.totalCents / 100).toFixed(2)} ${esc(o.currency)}</td><td>${esc(o.status)}</td>
      <td>${o.webhookDeliveries}</td><td>${Object.entries(o.serverOutcomes).map(([d, r]) => `${esc(d)}: <span class="${r.startsWith('sent') ? 'ok' : r.startsWith('skipped') ? 'skip' : 'bad'}">${esc(r)}</span>`).join('<br>')}</td></tr>`).join('')}
    </table>
    <h2>GA4 (sandbox) — ${ga4.purchases} purchase(s) counted</h2>
    <table id="ga4-events"><tr><th>Event</th><th>Client id</th><th>transaction_id</th><th>Value</th><th>Dedup</th></tr>
    ${ga4.accepted.map((e) => `<tr><td>${esc(e.name)}</td><td><code>${esc(e.client_id)}</code></td><td><code>${esc(e.params.transaction_id ?? '')}</code></td>
      <td>${esc(e.params.value ?? '')} ${esc(e.params.currency ?? '')}</td><td>${e.duplicate ? '<span class="skip">duplicate</span>' : ''}</td></tr>`).join('')}
    </table>
    <h2>GA4 drops</h2>
    <table id="ga4-dropped"><tr><th>Code</th><th>Field</th><th>Why</th></tr>
    ${ga4.dropped.map((d) => `<tr><td>${esc(d.code)}</td><td>${esc(d.field_path)}</td><td>${esc(d.description)}</td></tr>`).join('')}
    </table>`;
  document.body.dataset.ready = '1';
}
render();
setInterval(render, 2000);
