// Real-browser end-to-end test of the BackFlow demo page, in headless Debian Chromium.
//
//   node e2e/demo.e2e.mjs [BASE_URL]
//
// BASE_URL defaults to $BACKFLOW_URL, then http://127.0.0.1:3000; e2e/run.sh starts a server and
// passes its URL. The checks run in order, each with a timeout; the first failure stops the run,
// saves e2e/artifacts/failure.png and exits 1. The queue's counts are checked exactly, so the
// server must start with an empty queue (run.sh gives it a fresh data directory).
//
// Environment: CHROMIUM_PATH (default /usr/bin/chromium), E2E_SCREENSHOT (default
// e2e/artifacts/demo.png), E2E_HEAVY_N (Fibonacci n of the first side-by-side run, default 25).

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const baseUrl = (process.argv[2] ?? process.env.BACKFLOW_URL ?? 'http://127.0.0.1:3000').replace(/\/+$/, '');
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const artifacts = path.join(here, 'artifacts');
const screenshotPath = process.env.E2E_SCREENSHOT ?? path.join(artifacts, 'demo.png');
const heavyN = Number(process.env.E2E_HEAVY_N ?? 25);

const STEP_TIMEOUT_MS = 15_000;
const SERVER_WAIT_MS = 30_000;
const RUN_LIMIT_MS = 180_000;
const NOTIFICATION_TYPES = ['info', 'warning', 'success', 'error'];
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
// The original project's README example, checked verbatim below.
const README_SNIPPET =
  "const es = new EventSource('http://localhost:3000/notifications'); es.onmessage = (e) => console.log(JSON.parse(e.data));";
// Chromium logs every 4xx that a fetch() receives; the page shows those on purpose.
const EXPECTED_CONSOLE = /Failed to load resource: the server responded with a status of 4\d\d/;

const passed = [];
const problems = []; // uncaught page errors and console errors (CSP violations among them)
let page;

/** Runs one named check; the first failure ends the run. */
async function step(name, check) {
  const started = Date.now();
  try {
    await check();
  } catch (err) {
    console.log(`FAIL ${name}\n     ${String(err.message ?? err).split('\n').join('\n     ')}`);
    await fail();
  }
  passed.push(name);
  console.log(`ok   ${name} (${Date.now() - started} ms)`);
}

async function fail() {
  if (page) {
    await page.screenshot({ path: path.join(artifacts, 'failure.png'), fullPage: true }).catch(() => {});
    console.log(`     page screenshot: ${path.join(artifacts, 'failure.png')}`);
  }
  for (const problem of problems) console.log(`     browser: ${problem}`);
  console.log(`${passed.length} passed, 1 failed`);
  process.exit(1);
}

/** Waits until `selector` is visible and contains `expected`; explains what it saw if not. */
async function expectText(selector, expected, what) {
  const locator = page.locator(selector);
  try {
    await locator.filter({ hasText: expected }).first().waitFor();
  } catch {
    const actual = await locator.first().textContent({ timeout: 500 }).catch(() => '<missing>');
    const wanted = expected instanceof RegExp ? String(expected) : JSON.stringify(expected);
    throw new Error(`${what}: expected ${selector} to show ${wanted}, it shows ${JSON.stringify(actual)}`);
  }
}

/** Waits until the feed holds an entry of `kind` (a notification type or an application event). */
async function expectFeedEntry(kind, what) {
  try {
    await page.locator(`#feed li[data-kind="${kind}"]`).first().waitFor({ state: 'attached' });
  } catch {
    const kinds = await page.$$eval('#feed li', (items) => items.map((li) => li.dataset.kind));
    throw new Error(`${what}: no "${kind}" entry in the live feed; it has ${JSON.stringify(kinds.slice(0, 20))}`);
  }
}

async function waitForServer() {
  const deadline = Date.now() + SERVER_WAIT_MS;
  let last = 'no answer';
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(2000) });
      if (response.ok) return;
      last = `status ${response.status}`;
    } catch (err) {
      last = err.cause?.code ?? err.message;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${baseUrl}/health did not answer 200 within ${SERVER_WAIT_MS} ms (${last})`);
}

setTimeout(() => {
  console.log(`FAIL the whole run exceeded ${RUN_LIMIT_MS} ms`);
  process.exit(1);
}, RUN_LIMIT_MS).unref();

console.log(`e2e: testing ${baseUrl} with ${chromiumPath}`);
await mkdir(artifacts, { recursive: true });
await step('server answers /health', waitForServer);

const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_ARGS });
try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, colorScheme: 'light' });
  page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on('pageerror', (err) => problems.push(`uncaught ${err.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && !EXPECTED_CONSOLE.test(message.text())) problems.push(message.text());
  });

  await step('the page loads under its CSP and its script starts', async () => {
    const response = await page.goto(`${baseUrl}/`);
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-type'], /^text\/html/);
    assert.match(response.headers()['content-security-policy'] ?? '', /script-src 'self'/);
    assert.equal(await page.title(), 'BackFlow demo');
    await page.locator('body[data-ready="true"]').waitFor({ state: 'attached' });
    await expectText('#server-version', 'v', 'version from /health');
    assert.deepEqual(problems, [], 'browser errors while loading');
  });

  await step('notifications arrive through EventSource', async () => {
    await page.locator('#sse-state[data-state="open"]').waitFor();
    await expectText('#feed', 'Connected to notification stream', 'first event');
    await page.waitForFunction(
      (types) => [...document.querySelectorAll('#feed li')].filter((li) => types.includes(li.dataset.kind)).length >= 2,
      NOTIFICATION_TYPES,
    );
  });

  await step("the original README's EventSource snippet logs parsed events", async () => {
    // Verbatim, with the address of the server under test; run in the page like a console paste.
    const snippet = README_SNIPPET.replace('http://localhost:3000', baseUrl);
    const logged = [];
    const collect = (message) => {
      if (message.type() === 'log') logged.push(message.args()[0]?.jsonValue());
    };
    page.on('console', collect);
    await page.evaluate(`(() => { ${snippet} window.readmeSnippet = es; })()`);
    await page.waitForFunction(() => window.readmeSnippet.readyState === EventSource.OPEN);
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    while (logged.length < 3 && Date.now() < deadline) await page.waitForTimeout(100);
    await page.evaluate(() => window.readmeSnippet.close());
    page.off('console', collect);
    const events = await Promise.all(logged);
    assert.ok(events.length >= 3, `expected 3 logged events, got ${JSON.stringify(events)}`);
    assert.deepEqual(events[0], { message: 'Connected to notification stream' });
    for (const event of events.slice(1)) {
      assert.ok(Number.isInteger(event.id), `id in ${JSON.stringify(event)}`);
      assert.ok(NOTIFICATION_TYPES.includes(event.type), `type in ${JSON.stringify(event)}`);
      assert.equal(typeof event.message, 'string');
      assert.ok(!Number.isNaN(Date.parse(event.timestamp)), `timestamp in ${JSON.stringify(event)}`);
    }
    console.log(`     logged ${JSON.stringify(events[0])} then ${JSON.stringify(events[1])}`);
  });

  await step('an API error is shown with its status and code', async () => {
    await page.click('#call-protected');
    await expectText('#auth-result.error', 'Access token required', 'calling /protected signed out');
    await expectText('#auth-result.error', '401', 'status of the error');
  });

  await step('login shows the user, and /protected answers with the claims', async () => {
    await page.fill('#login-username', 'admin');
    await page.fill('#login-password', 'admin123');
    await page.click('#login-submit');
    await expectText('#auth-result.ok', 'Login successful', 'login answer');
    await page.locator('#auth-user[data-user="admin"]').waitFor();
    await expectFeedEntry('auth.login', 'login event');
    await page.click('#call-protected');
    await expectText('#auth-result.ok', 'This is a protected route', '/protected answer');
    await expectText('#auth-result.ok', '"username": "admin"', 'claims shown');
  });

  const task = `browser check ${Date.now()}`;
  await step('an enqueued task appears in the queue status and the feed', async () => {
    await page.fill('#enqueue-task', task);
    await page.fill('#enqueue-priority', '-1000000');
    await page.click('#enqueue-submit');
    await expectText('#queue-result.ok', 'Task enqueued successfully', 'enqueue answer');
    await expectText('#queue-next', task, 'queue status next task');
    assert.ok(Number(await page.textContent('#queue-size')) >= 1, 'queue size');
    await expectFeedEntry('queue.enqueued', 'enqueue event');
  });

  await step('dequeue returns the task and the feed says so', async () => {
    await page.click('#dequeue');
    await expectText('#queue-result.ok', task, 'dequeued task');
    await expectFeedEntry('queue.dequeued', 'dequeue event');
    await page.fill('#enqueue-task', 'render the weekly report');
    await page.fill('#enqueue-priority', '2');
    await page.click('#enqueue-submit');
    await expectText('#queue-next', 'render the weekly report', 'queue status after a second enqueue');
  });

  await step('the queue shows the delayed, leased and dead counts', async () => {
    // The dequeue step left one task ("render the weekly report") queued.
    for (const id of ['#queue-delayed', '#queue-leased', '#queue-dead']) await expectText(id, /^0$/, `${id} at start`);
    await expectText('#queue-size', /^1$/, 'queued tasks at start');
  });

  const failing = `flaky job ${Date.now()}`;
  await step('worker: a task of one attempt is leased, nacked and dead-lettered', async () => {
    await page.fill('#enqueue-task', failing);
    await page.fill('#enqueue-priority', '-1000000');
    await page.fill('#enqueue-attempts', '1');
    await page.click('#enqueue-submit');
    await expectText('#queue-result.ok', 'Task enqueued successfully', 'enqueue with maxAttempts 1');
    await page.fill('#enqueue-attempts', '');
    await page.fill('#lease-count', '1');
    await page.click('#lease-submit');
    await expectText('#worker-result.ok', `Leased "${failing}"`, 'lease answer');
    await expectText('#held .row', failing, 'the held lease');
    await expectText('#held .row', 'attempt 1 of 1', 'attempts of the held lease');
    await expectFeedEntry('queue.leased', 'lease event');
    await expectText('#queue-leased', /^1$/, 'leased count');
    await page.fill('#nack-error', 'the printer is on fire');
    await page.click(`#held .row:has-text("${failing}") button[data-action="nack"]`);
    await expectText('#worker-result.ok', 'dead-lettered', 'nack answer');
    await expectText('#held-count', /^0$/, 'no lease held after the nack');
    await expectFeedEntry('queue.dead', 'dead-letter event');
    await expectText('#dead .row', failing, 'the dead-letter list');
    await expectText('#dead .row', 'the printer is on fire', 'the last error in the dead-letter list');
    await expectText('#queue-dead', /^1$/, 'dead count');
    await expectText('#queue-leased', /^0$/, 'leased count after the nack');
  });

  await step('worker: the dead letter is retried, leased again and acknowledged', async () => {
    await page.click(`#dead .row:has-text("${failing}") button[data-action="retry"]`);
    await expectText('#worker-result.ok', 'queued again', 'retry answer');
    await expectFeedEntry('queue.retried', 'retry event');
    await expectText('#queue-dead', /^0$/, 'dead count after the retry');
    await page.locator('#dead .row').first().waitFor({ state: 'detached' });
    await expectText('#queue-next', failing, 'the retried task is next again, at its original place');
    await page.click('#lease-submit');
    await expectText('#held .row', failing, 'the held lease after the retry');
    await expectText('#held .row', 'attempt 1 of 1', 'attempts reset by the retry');
    await page.click(`#held .row:has-text("${failing}") button[data-action="ack"]`);
    await expectText('#worker-result.ok', 'Task acknowledged', 'ack answer');
    await expectFeedEntry('queue.acked', 'ack event');
    await expectText('#held-count', /^0$/, 'no lease held after the ack');
    for (const id of ['#queue-delayed', '#queue-leased', '#queue-dead']) await expectText(id, /^0$/, `${id} back to zero`);
    await expectText('#queue-size', /^1$/, 'only the task left by the dequeue step');
    const gone = await fetch(`${baseUrl}/queue/dead`).then((response) => response.json());
    assert.deepEqual(gone.tasks, [], 'the server\'s dead-letter list');
  });

  await step('a delayed task is counted as delayed', async () => {
    await page.fill('#enqueue-task', 'wake me later');
    await page.fill('#enqueue-priority', '9');
    await page.fill('#enqueue-delay', '3600000');
    await page.click('#enqueue-submit');
    await expectText('#queue-result.ok', 'delayed, visible at', 'enqueue answer of a delayed task');
    await expectText('#queue-delayed', /^1$/, 'delayed count');
    await page.fill('#enqueue-delay', '0');
  });

  await step('a /stream run fills the progress bar', async () => {
    await page.fill('#stream-total', '600');
    await page.fill('#stream-chunk', '50');
    await page.fill('#stream-delay', '20');
    await page.click('#stream-start');
    await expectText('#stream-status', 'Done: 600 / 600', 'stream status');
    assert.equal(await page.$eval('#stream-progress', (bar) => bar.value), 600);
  });

  await step('the Fibonacci input allows the smaller of the two routes\' maxima', async () => {
    // run.sh sets CHILD_MAX_N=44 and WORKER_MAX_N=48: the page's own default (45) must give way.
    await page.waitForFunction(() => document.getElementById('heavy-n').max === '44');
  });

  await step('child process and worker pool run side by side into the chart, on both pools', async () => {
    const runs = [[heavyN, 'rayon'], [heavyN + 3, 'blocking']];
    for (const [n, pool] of runs) {
      await page.fill('#heavy-n', String(n));
      await page.selectOption('#heavy-pool', pool);
      await page.click('#heavy-run');
      // The button is disabled while both requests run; a debug build is slow at large n.
      await page.locator('#heavy-run:enabled').waitFor({ timeout: 60_000 });
      for (const side of ['child', 'worker']) {
        const outcome = page.locator(`#heavy-${side}`);
        const text = await outcome.textContent();
        const failed = await outcome.evaluate((element) => element.classList.contains('error'));
        assert.ok(!failed && text.includes(`fib(${n}) =`), `${side} run (n=${n}, ${pool}) shows: ${text}`);
      }
    }
    await expectText('#heavy-worker', 'spawn_blocking', 'the blocking pool answered the last run');
    assert.equal(await page.locator('#heavy-chart rect.bar-child').count(), runs.length, 'child bars');
    assert.equal(await page.locator('#heavy-chart rect.bar-worker').count(), runs.length, 'worker bars');
  });

  await step('screenshot saved', async () => {
    await page.screenshot({ path: screenshotPath, fullPage: true });
    console.log(`     ${screenshotPath}`);
  });

  await step('logout revokes the token', async () => {
    await page.click('#logout');
    await expectText('#auth-result.ok', 'Logged out successfully', 'logout answer');
    await expectText('#auth-user', 'signed out', 'session after logout');
    await expectFeedEntry('auth.logout', 'logout event');
  });

  await step('no script error or CSP violation in the whole run', async () => {
    assert.deepEqual(problems, []);
  });
} finally {
  await browser.close();
}

console.log(`${passed.length} passed, 0 failed`);
