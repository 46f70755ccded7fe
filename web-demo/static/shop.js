// The demo storefront. Every tracking call goes through the Tally npm package.
import { createBrowserTracker } from '/pkg/index.js';

const app = document.getElementById('app');
const page = document.body.dataset.page;
const money = (cents, currency) => new Intl.NumberFormat('en-IE', { style: 'currency', currency }).format(cents / 100);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

// The shop's own cart (functional storage, not tracking).
const cart = {
  read: () => { try { return JSON.parse(localStorage.getItem('demo_cart') || '[]'); } catch { return []; } },
  write: (lines) => { localStorage.setItem('demo_cart', JSON.stringify(lines)); renderCartCount(); },
  clear: () => cart.write([]),
};
function renderCartCount() {
  const n = cart.read().reduce((a, l) => a + l.quantity, 0);
  document.getElementById('cart-link').textContent = n ? `Cart (${n})` : 'Cart';
}

// "Ad blocker" switch for the demo: ?blocked=tracker skips loading the package.
if (new URLSearchParams(location.search).get('blocked') === 'tracker') sessionStorage.setItem('demo_blocked', 'tracker');
if (new URLSearchParams(location.search).get('blocked') === 'none') sessionStorage.removeItem('demo_blocked');
const blocked = sessionStorage.getItem('demo_blocked') === 'tracker';

let tracker = null;
if (!blocked) {
  try {
    tracker = await createBrowserTracker({
      endpoint: `${location.origin}/collect`,
      siteKey: 'demo-site-key',
      ga4MeasurementId: 'G-DEMO0001',
      consentMode: 'v2',
      debug: true,
    });
  } catch (e) {
    console.error('Tally failed to start:', e);
  }
}
window.tally = tracker;

const catalog = await (await fetch('/api/catalog')).json();
const byId = Object.fromEntries(catalog.products.map((p) => [p.id, p]));
// The shopper's currency (the shop's own setting, kept in localStorage).
const stored = localStorage.getItem('demo_currency');
const currency = catalog.currencies.includes(stored) ? stored : catalog.currencies[0];
const price = (p, cur = currency) => p.prices[cur];
const item = (p, quantity = 1, cur = currency) => ({ itemId: p.id, itemName: p.name, itemBrand: p.brand, itemCategory: p.category, price: price(p, cur) / 100, quantity });
function currencyPicker() {
  const nav = document.querySelector('header nav');
  nav.insertAdjacentHTML('beforeend', `<select id="currency" aria-label="Currency">${catalog.currencies.map((c) => `<option ${c === currency ? 'selected' : ''}>${c}</option>`).join('')}</select>`);
  document.getElementById('currency').onchange = (e) => { localStorage.setItem('demo_currency', e.target.value); location.reload(); };
}
const swatch = (p) => `<div class="swatch" style="background:${p.colour}">${esc(p.name[0])}</div>`;

// The shop's consent record (its CMP cookie), kept even when the tracker is
// blocked: the backend reads it from the checkout request.
const consentCookie = () => (document.cookie.match(/(?:^|; )demo_consent=([^;]*)/) || [])[1] || '';
function consentBanner() {
  const box = document.getElementById('consent');
  const undecided = tracker ? Object.values(tracker.getConsent()).every((v) => v === 'unknown') && !consentCookie() : !consentCookie();
  box.hidden = !undecided;
  const decide = (ads, analytics) => {
    const g = (b) => (b ? 'granted' : 'denied');
    tracker?.updateConsent({ analytics_storage: g(analytics), ad_storage: g(ads), ad_user_data: g(ads), ad_personalization: g(ads) });
    document.cookie = `demo_consent=analytics.${g(analytics)}.ads.${g(ads)}; path=/; max-age=15552000; samesite=lax`;
    box.hidden = true;
  };
  document.getElementById('consent-accept').onclick = () => decide(true, true);
  document.getElementById('consent-analytics').onclick = () => decide(false, true);
  document.getElementById('consent-reject').onclick = () => decide(false, false);
}

const pages = {
  catalog() {
    app.innerHTML = `<h1>Catalog</h1><div class="grid">${catalog.products.map((p) => `
      <div class="card"><a href="/product/${p.id}">${swatch(p)}<div>${esc(p.name)}</div>
      <div class="muted">${esc(p.brand)}</div><div class="price">${money(price(p), currency)}</div></a></div>`).join('')}</div>`;
    tracker?.trackPageView();
  },
  product() {
    const p = byId[location.pathname.split('/').pop()];
    if (!p) { app.innerHTML = '<p>Unknown product.</p>'; return; }
    app.innerHTML = `<div class="card" style="max-width:420px">${swatch(p)}<h1>${esc(p.name)}</h1>
      <p class="muted">${esc(p.brand)} · ${esc(p.category)}</p><p class="price">${money(price(p), currency)}</p>
      <button id="add">Add to cart</button> <span id="added" class="muted"></span></div>`;
    tracker?.trackViewItem({ currency: currency, value: price(p) / 100, items: [item(p)] });
    document.getElementById('add').onclick = () => {
      const lines = cart.read();
      const line = lines.find((l) => l.id === p.id);
      if (line) line.quantity += 1; else lines.push({ id: p.id, quantity: 1 });
      cart.write(lines);
      tracker?.trackAddToCart({ currency: currency, value: price(p) / 100, items: [item(p)] });
      document.getElementById('added').textContent = 'Added.';
    };
  },
  cart() {
    const lines = cart.read();
    if (!lines.length) { app.innerHTML = '<h1>Cart</h1><p>Your cart is empty. <a href="/">Browse the catalog</a>.</p>'; return; }
    const total = lines.reduce((a, l) => a + price(byId[l.id]) * l.quantity, 0);
    app.innerHTML = `<h1>Cart</h1><table><tr><th>Product</th><th>Qty</th><th>Price</th><th></th></tr>${lines.map((l) => `
      <tr><td>${esc(byId[l.id].name)}</td><td>${l.quantity}</td><td>${money(price(byId[l.id]) * l.quantity, currency)}</td>
      <td><button class="secondary" data-remove="${l.id}">Remove</button></td></tr>`).join('')}</table>
      <p class="price">Total ${money(total, currency)}</p><a href="/checkout"><button id="to-checkout">Checkout</button></a>`;
    tracker?.trackEvent({ name: 'view_cart', currency: currency, value: total / 100, items: lines.map((l) => item(byId[l.id], l.quantity)) });
    app.querySelectorAll('[data-remove]').forEach((b) => (b.onclick = () => {
      const p = byId[b.dataset.remove];
      const line = lines.find((l) => l.id === p.id);
      cart.write(lines.filter((l) => l.id !== p.id));
      tracker?.trackRemoveFromCart({ currency: currency, value: (price(p) * line.quantity) / 100, items: [item(p, line.quantity)] });
      pages.cart();
    }));
  },
  checkout() {
    const lines = cart.read();
    if (!lines.length) { location.href = '/cart'; return; }
    const total = lines.reduce((a, l) => a + price(byId[l.id]) * l.quantity, 0);
    const items = lines.map((l) => item(byId[l.id], l.quantity));
    app.innerHTML = `<h1>Checkout</h1><div class="card"><p>Total <strong>${money(total, currency)}</strong></p>
      <p><label>Email<br><input id="email" type="email" value="jane.doe@example.com"></label></p>
      <button id="pay">Pay now</button> <span id="status" class="muted"></span></div>`;
    tracker?.trackBeginCheckout({ currency: currency, value: total / 100, items });
    document.getElementById('pay').onclick = async () => {
      const email = document.getElementById('email').value;
      tracker?.trackAddPaymentInfo({ currency: currency, value: total / 100, items, paymentType: 'card' });
      // The browser state travels with the order; the webhook will use it.
      const context = tracker ? tracker.exportContext({ userData: { email } }) : null;
      const res = await fetch('/api/orders', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ lines, email, context, currency, pageUrl: location.href }) });
      if (!res.ok) { document.getElementById('status').textContent = await res.text(); return; }
      const order = await res.json();
      location.href = `/thank-you?order=${encodeURIComponent(order.id)}`;
    };
  },
  async 'thank-you'() {
    const id = new URLSearchParams(location.search).get('order');
    const res = await fetch(`/api/orders/${encodeURIComponent(id)}`);
    if (!res.ok) { app.innerHTML = '<p>Unknown order.</p>'; return; }
    const order = await res.json();
    const items = order.lines.map((l) => item(byId[l.id], l.quantity, order.currency));
    let eventId = '';
    if (tracker) {
      eventId = tracker.trackPurchase({ transactionId: order.id, value: order.totalCents / 100, currency: order.currency, items });
      await tracker.flush();
    }
    cart.clear();
    app.innerHTML = `<h1>Thank you!</h1><div class="card"><p>Order <strong id="order-id">${esc(order.id)}</strong>,
      ${money(order.totalCents, order.currency)}.</p>
      <p class="muted">Browser purchase event id: <code id="purchase-event-id" data-event-id="${esc(eventId)}">${esc(eventId || '(tracker blocked)')}</code></p>
      <p class="muted">Client id: <code id="client-id">${esc(tracker?.getClientId() ?? '')}</code></p>
      <p><a href="/inspector">See what each destination received →</a></p></div>`;
  },
};

renderCartCount();
currencyPicker();
consentBanner();
await pages[page]?.();
document.body.dataset.ready = '1';
