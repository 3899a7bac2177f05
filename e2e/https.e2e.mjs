// Real-browser test of event streams over HTTPS and HTTP/2, in headless Debian Chromium.
//
//   node e2e/https.e2e.mjs https://localhost:PORT
//
// A browser opens at most 6 HTTP/1.1 connections per origin, so a 7th EventSource never
// connects; over HTTP/2 they share one connection. This opens the demo page over HTTPS (the
// server's certificate is self-signed: e2e/run.sh starts it with TLS_SELF_SIGNED=true, and
// Chromium is told to accept it), then 10 EventSources to /notifications from that page, and
// checks that every one of them receives the connected message and a notification, and that
// the page and the streams came over h2. Exits 1 on the first failure.

import assert from 'node:assert/strict';

import { chromium } from 'playwright-core';

const baseUrl = (process.argv[2] ?? process.env.BACKFLOW_URL ?? 'https://localhost:3000').replace(/\/+$/, '');
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const STREAMS = 10;
const WAIT_MS = 20_000;
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // The certificate is made by the server at start-up; nothing vouches for it.
  '--ignore-certificate-errors',
];

setTimeout(() => {
  console.log(`FAIL the run exceeded ${WAIT_MS * 2} ms`);
  process.exit(1);
}, WAIT_MS * 2).unref();

console.log(`e2e: ${STREAMS} EventSources over HTTPS to ${baseUrl}`);
const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_ARGS });
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const response = await page.goto(`${baseUrl}/`);
  assert.equal(response.status(), 200, 'the demo page over HTTPS');
  assert.match(response.headers()['strict-transport-security'] ?? '', /max-age=\d+/, 'HSTS sent');

  const result = await page.evaluate(async ({ count, waitMs }) => {
    const streams = [];
    const received = await Promise.all(
      Array.from({ length: count }, (_, index) => new Promise((resolve, reject) => {
        const source = new EventSource('/notifications');
        streams.push(source);
        const seen = [];
        const timer = setTimeout(
          () => reject(new Error(`stream ${index} received ${JSON.stringify(seen)} in ${waitMs} ms`)),
          waitMs,
        );
        source.onmessage = (event) => {
          const data = JSON.parse(event.data);
          seen.push(data.message ?? data.type);
          // The connected message, then a periodic notification (it has a type).
          if (seen.length >= 2 && data.type) {
            clearTimeout(timer);
            resolve(seen.length);
          }
        };
      })),
    );
    const protocols = performance
      .getEntriesByType('resource')
      .concat(performance.getEntriesByType('navigation'))
      .map((entry) => entry.nextHopProtocol);
    for (const source of streams) source.close();
    return { received, protocols };
  }, { count: STREAMS, waitMs: WAIT_MS });

  assert.equal(result.received.length, STREAMS, 'every stream received');
  assert.ok(result.protocols.length > 0, 'resource timings recorded');
  for (const protocol of result.protocols) assert.equal(protocol, 'h2', `over HTTP/2: ${result.protocols}`);
  console.log(`ok   ${STREAMS} EventSources over one HTTPS origin all received (${result.protocols[0]})`);
} catch (err) {
  console.log(`FAIL ${String(err.message ?? err)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
