// The demo shop's server tracker on a JavaScript backend: what a Next.js route
// handler does with `tally-web/server` (pkg/server.js), in plain Node.
//
// `tally-demo --server-tracker js` starts it as
//   node web-demo/node/payment-route.mjs <path of pkg/server.js>
// with TALLY_COLLECT_URL (the demo's /collect) and TALLY_SERVER_SECRET in the
// environment. Its payment webhook and refunds then send each order's stored
// envelope and the purchase (or refund) here, and this route reports it through
// `fromContext(envelope).trackPurchase(input)` (or `trackRefund`), answering with
// the outcome at every destination. It prints `{"listening":<port>}` once it
// listens on loopback, and exits when its stdin closes (the demo stopped).
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';

if (typeof fetch !== 'function' || typeof Response !== 'function') {
  console.error(`tally-web/server needs Node.js 18 or newer (fetch); this is Node ${process.version}`);
  process.exit(1);
}
const serverJs = process.argv[2];
if (!serverJs) {
  console.error('usage: node payment-route.mjs <path of pkg/server.js>');
  process.exit(2);
}
const { createServerTracker } = await import(pathToFileURL(serverJs).href);

// One tracker per process; a wrong option throws here, naming it.
const tally = createServerTracker({
  endpoint: process.env.TALLY_COLLECT_URL ?? '',
  secret: process.env.TALLY_SERVER_SECRET ?? '',
});

const HELPERS = { '/purchase': 'trackPurchase', '/refund': 'trackRefund' };

const json = (body, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

/**
 * `POST /purchase` or `POST /refund` with `{ envelope, input }`: the envelope
 * the browser's exportContext() produced, stored with the order (null when the
 * tracker was blocked), and the helper's input. Answers the ServerTrackResult,
 * or `{ error: { code, message } }`: 422 for bad input, 502 when the collector
 * could not be asked or refused the call.
 */
export async function POST(request) {
  const helper = HELPERS[new URL(request.url).pathname];
  if (!helper) return json({ error: { code: 'not_found', message: 'POST /purchase or /refund' } }, 404);
  let body;
  try {
    body = await request.json();
  } catch {
    return json({ error: { code: 'invalid', message: 'the body is not JSON' } }, 400);
  }
  const { envelope, input } = body ?? {};
  try {
    const tracker = envelope ? tally.fromContext(envelope) : tally;
    return json(await tracker[helper](input));
  } catch (e) {
    const code = e?.code ?? 'internal';
    return json({ error: { code, message: e?.message ?? String(e) } }, code === 'invalid' ? 422 : 502);
  }
}

// The route on node:http (a framework does this part in a real backend).
const server = createServer(async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const request = new Request(`http://127.0.0.1${req.url}`, {
    method: req.method,
    headers: { 'content-type': req.headers['content-type'] ?? 'application/json' },
    body: req.method === 'POST' ? Buffer.concat(chunks) : undefined,
  });
  const response = req.method === 'POST' ? await POST(request) : json({ error: { code: 'method', message: 'POST only' } }, 405);
  res.writeHead(response.status, { 'content-type': response.headers.get('content-type') ?? 'application/json' });
  res.end(Buffer.from(await response.arrayBuffer()));
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ listening: server.address().port })));
// The demo holds our stdin: when it stops (or dies), stdin ends and so do we.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
