// Runs the browser tracker's wasm module (pkg/tally_web_bg.wasm) in Node and checks that it does the tracker's work:
// a bad config refused, a purchase without a transaction id refused by name, a purchase held for consent then queued, bridged to gtag/fbq
// and batched for the collector with the envelope (and its user data hashed).
// A module that lost code would measure small and prove nothing; this keeps the size figures honest.
// Usage: node check.js <module.wasm> [user-data]   (cargo xtask pkg runs it)
const fs = require('fs');
const m = new WebAssembly.Instance(new WebAssembly.Module(fs.readFileSync(process.argv[2])), {});
const x = m.exports;
const write = (buffer, text) => {
  const b = Buffer.from(text);
  const p = x[buffer](b.length);
  new Uint8Array(x.memory.buffer, p, b.length).set(b);
};
const read = (p, n) => Buffer.from(new Uint8Array(x.memory.buffer, p, n)).toString();
// One export called as pkg/index.js calls it: JSON in, the stored queue beside it; a
// `["queue"]` effect gets the queue to store (output(2), output(3)) as its argument.
function call(name, input, queue = '') {
  write('input_buffer', JSON.stringify(input));
  write('queue_buffer', queue);
  x[name]();
  const fx = JSON.parse(read(x.output(0), x.output(1)));
  for (const e of fx) if (e[0] === 'queue') e[1] = read(x.output(2), x.output(3));
  return fx;
}
const fail = (m) => { console.error('tally-web module: ' + m); process.exit(1); };
const bad = call('start', { c: { endpoint: '/c', ga4MeasurementId: 'nope' }, h: 'shop.example' });
if (bad[0][0] !== 'error' || !/ga4MeasurementId/.test(bad[0][1])) fail('a bad config was not refused: ' + JSON.stringify(bad));
call('start', { c: { endpoint: '/c', ga4MeasurementId: 'G-ABC123', metaPixelId: '123456789012345' }, h: 'shop.example', q: '?gclid=Cj0', j: '_ga=GA1.1.111.222', t: 1757409591000, o: true, u: 'https://shop.example/?gclid=Cj0' });
const noTxn = call('track', { i: 6, e: { value: 1, currency: 'EUR' }, t: 1757409591000, r: [], s: '' });
if (noTxn[0][0] !== 'error' || noTxn[0][1] !== '[tally] trackPurchase: transactionId is required') fail('a purchase without a transaction id was not refused by name: ' + JSON.stringify(noTxn));
const input = { transactionId: 'T-1', value: 12.5, currency: 'EUR', items: [{ itemId: 'A', price: 12.5, quantity: 1 }] };
if (process.argv[3] === 'user-data') input.userData = { email: ' Jane@Example.com ' };
const view = call('track', { i: 0, e: { value: 1, currency: 'EUR' }, t: 1757409591000, r: [9, 9, 9, 9, 9, 9, 9, 9, 9, 9], s: '', j: '_ga=GA1.1.111.222' });
const fx = call('track', { i: 6, e: input, t: 1757409591000, r: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], s: '', j: '_ga=GA1.1.111.222' });
if (fx.map((e) => e[0]).join() !== 'return,wait') fail('before a consent decision the purchase must wait: ' + JSON.stringify(fx));
const granted = { ad_storage: 'granted', analytics_storage: 'granted', ad_user_data: 'granted', ad_personalization: 'granted' };
fx.push(...call('consent', { c: granted, s: '', j: '_ga=GA1.1.111.222', t: 1757409591050, u: 'https://shop.example/' }));
const kinds = fx.map((e) => e[0]);
for (const k of ['return', 'queue', 'sent', 'gtag', 'fbq', 'schedule']) if (!kinds.includes(k)) fail('track did not produce ' + k + ': ' + JSON.stringify(fx));
// On an https page (the call's URL) every cookie the decision writes is Secure.
const cookies = fx.filter((e) => e[0] === 'cookie');
if (!cookies.length || !cookies.every((c) => c[1].endsWith('; Secure'))) fail('cookies on https must be Secure: ' + JSON.stringify(cookies));
// Every event that waited goes into the queue the decision leaves, the purchase and the view.
const queue = fx.filter((e) => e[0] === 'queue').pop()[1];
if (!queue.includes(fx[0][1]) || !queue.includes(view[0][1])) fail('the decision must queue every waiting event: ' + queue);
const batch = call('next_batch', { b: 'tab1', t: 1757409591100, j: '_ga=GA1.1.111.222', u: 'https://shop.example/thanks?gclid=Cj0' }, queue);
const post = batch.find((e) => e[0] === 'post');
if (!post || !post[2].includes('"clientId":"111.222"') || !post[2].includes('"gclid":"Cj0"')) fail('no collector batch: ' + JSON.stringify(batch));
if (process.argv[3] === 'user-data') {
  const set = fx.find((e) => e[0] === 'gtag' && e[1][1] === 'user_data');
  // SHA-256 of "jane@example.com"
  if (!set || !JSON.stringify(set).includes('8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d')) fail('user data not hashed: ' + JSON.stringify(fx));
}
