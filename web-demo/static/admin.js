// The admin page: orders with full / partial refunds, and the QA switches.
const app = document.getElementById('app');
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const money = (cents, currency) => `${(cents / 100).toFixed(2)} ${currency}`;
const post = async (url, body) => {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(await res.text());
  return res.json();
};
const DESTS = ['ga4', 'google_ads', 'meta', 'rokt', 'webhook'];

async function render(message = '', isError = false) {
  const [orders, sw] = await Promise.all([(await fetch('/api/orders')).json(), (await fetch('/api/admin/switches')).json()]);
  app.innerHTML = `<h1>Admin</h1><p id="admin-message" class="message ${isError ? 'bad' : 'muted'}" role="${isError ? 'alert' : 'status'}">${esc(message)}</p>
    <h2>Switches</h2><div class="card">
    <p id="server-tracker" data-path="${esc(sw.serverTracker.path)}">Payment webhook and refunds confirm through <strong>${esc(sw.serverTracker.path)}</strong>: ${esc(sw.serverTracker.description)}.
      <span class="muted">Chosen at start: <code>--server-tracker rust|js</code>.</span></p>
    <p><label><input type="checkbox" id="sw-collect" ${sw.collectBlocked ? 'checked' : ''}> Ad blocker: block the collect endpoint (<code>/collect</code> answers browsers 403; the JS server tracker, a backend, still gets through)</label><br>
    <label><input type="checkbox" id="sw-collect-down" ${sw.collectDown ? 'checked' : ''}> Collector outage (<code>/collect</code> answers 503; browsers keep and retry)</label><br>
    <span class="muted">Ad blocker on the tracker script: open the shop with <a href="/?blocked=tracker">?blocked=tracker</a>.</span></p>
    <p>Destination outage: ${DESTS.map((d) => `<label><input type="checkbox" class="sw-down" data-dest="${d}" ${sw.down.includes(d) ? 'checked' : ''}> ${d} down</label>`).join(' ')}
      <button id="flush" class="secondary">Flush the outbox</button></p>
    <p><label>Webhook delay (ms) <input id="sw-delay" type="number" min="0" value="${sw.webhookDelayMs}" style="width:7em"></label>
      <label>Deliveries per webhook <input id="sw-repeat" type="number" min="1" max="10" value="${sw.webhookDeliveries}" style="width:4em"></label>
      <label>Simulated lateness (ms) <input id="sw-late" type="number" min="0" value="${sw.webhookLateMs}" style="width:8em"></label>
      <button id="sw-save" class="secondary">Save</button></p></div>
    <h2>Orders</h2><table id="admin-orders"><tr><th>Order</th><th>Total</th><th>Refunded</th><th>Status</th><th>Refund</th></tr>
    ${orders.map((o) => `<tr data-order="${esc(o.id)}"><td>${esc(o.id)}</td><td>${money(o.totalCents, o.currency)}</td><td>${money(o.refundedCents, o.currency)}</td>
      <td>${esc(o.status)}</td><td>${o.status === 'pending' || o.refundedCents >= o.totalCents ? '' : `
      <button class="refund-full" data-order="${esc(o.id)}">Full refund</button>
      <input class="refund-amount" data-order="${esc(o.id)}" type="number" step="0.01" min="0.01" placeholder="amount" style="width:6em">
      <button class="refund-partial secondary" data-order="${esc(o.id)}">Partial refund</button>`}</td></tr>`).join('')}</table>`;
  const act = (f) => async () => { try { await render(await f()); } catch (e) { await render(e.message, true); } };
  document.getElementById('sw-collect').onchange = act(async () => { await post('/api/admin/switches', { collectBlocked: document.getElementById('sw-collect').checked }); return 'Saved.'; });
  document.getElementById('sw-collect-down').onchange = act(async () => { await post('/api/admin/switches', { collectDown: document.getElementById('sw-collect-down').checked }); return 'Saved.'; });
  app.querySelectorAll('.sw-down').forEach((b) => (b.onchange = act(async () => { await post('/api/admin/switches', { outage: { destination: b.dataset.dest, down: b.checked } }); return `${b.dataset.dest} ${b.checked ? 'down' : 'up'}.`; })));
  document.getElementById('sw-save').onclick = act(async () => {
    await post('/api/admin/switches', { webhookDelayMs: Number(document.getElementById('sw-delay').value), webhookDeliveries: Number(document.getElementById('sw-repeat').value), webhookLateMs: Number(document.getElementById('sw-late').value) });
    return 'Saved.';
  });
  document.getElementById('flush').onclick = act(async () => (await post('/api/admin/flush', {})).message);
  app.querySelectorAll('.refund-full').forEach((b) => (b.onclick = act(async () => { await post('/api/admin/refund', { orderId: b.dataset.order }); return `Refunded ${b.dataset.order} in full.`; })));
  app.querySelectorAll('.refund-partial').forEach((b) => (b.onclick = act(async () => {
    const v = app.querySelector(`.refund-amount[data-order="${b.dataset.order}"]`).value;
    await post('/api/admin/refund', { orderId: b.dataset.order, amountCents: Math.round(Number(v) * 100) });
    return `Refunded ${v} of ${b.dataset.order}.`;
  })));
  document.body.dataset.ready = '1';
}
render();
