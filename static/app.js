// BackFlow demo page: drives every route of the API from the browser.
//
// Plain JavaScript module, no build step and no dependencies. Everything the server sends is
// written with textContent (never innerHTML), and nothing is inline, so the page runs under a
// Content-Security-Policy that allows only its own origin. The JWT lives in memory only: a
// reload signs out, and no script can read it back from storage.

const FEED_LIMIT = 60;
const CHART_RUNS = 8;
const HEALTH_PROBE_MS = 200;

const $ = (id) => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`missing element #${id}`);
  return element;
};

/** An API error answer (`{error, code}`) or a network failure (status 0). */
class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  describe() {
    const head = this.status ? `${this.status} ${this.code}` : this.code;
    const retry = this.retryAfter ? ` (retry after ${this.retryAfter} s)` : '';
    return `${head}: ${this.message}${retry}`;
  }
}

/** Calls the API and returns the parsed JSON body; throws ApiError for any non-2xx answer. */
async function api(path, { method = 'GET', body, token, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network_error', `cannot reach the server (${err.message})`);
  }
  if (response.ok) return response.json();
  throw await errorFrom(response);
}

/** Reads the contract's JSON error body, tolerating anything else a proxy might send. */
async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: fall back to the status line.
  }
  return new ApiError(
    response.status,
    body?.code ?? 'http_error',
    body?.error ?? (response.statusText || 'request failed'),
    response.headers.get('Retry-After'),
  );
}

/** Shows `text` in a result box, styled as success or error. */
function show(element, text, ok = true) {
  element.hidden = false;
  element.textContent = text;
  element.classList.toggle('ok', ok);
  element.classList.toggle('error', !ok);
}

function showError(element, err) {
  show(element, err instanceof ApiError ? err.describe() : String(err), false);
}

const json = (value) => JSON.stringify(value, null, 2);
const clock = (date) => date.toLocaleTimeString([], { hour12: false });

// ---------------------------------------------------------------- live feed (EventSource)

const feed = { source: null, count: 0, paused: false };

function connectFeed() {
  feed.source?.close();
  setFeedState('connecting');
  // EventSource reconnects by itself and sends Last-Event-ID, so the server replays what we missed.
  const source = new EventSource('/notifications');
  feed.source = source;
  source.onopen = () => setFeedState('open');
  source.onerror = () =>
    setFeedState(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
  source.onmessage = (event) => {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      data = { message: event.data };
    }
    onFeedEvent(data, event.lastEventId);
  };
}

function setFeedState(state) {
  const pill = $('sse-state');
  pill.dataset.state = state;
  pill.textContent = state;
  // A closed EventSource (e.g. the server answered 503 at its connection cap) stays closed.
  $('sse-reconnect').hidden = state !== 'closed';
}

function onFeedEvent(data, lastEventId) {
  feed.count += 1;
  $('feed-count').textContent = String(feed.count);
  if (typeof data.event === 'string' && data.event.startsWith('queue.')) {
    onQueueEvent(data);
    refreshQueueSoon();
  }
  if (!feed.paused) addFeedItem(data, lastEventId);
}

function addFeedItem(data, lastEventId) {
  const kind = typeof data.event === 'string' ? data.event : data.type ?? 'message';
  const item = document.createElement('li');
  item.className = `feed-item kind-${cssToken(data.type ?? 'info')}`;
  item.dataset.kind = kind;
  if (data.event) item.classList.add('app-event');

  const time = document.createElement('time');
  const at = data.timestamp ? new Date(data.timestamp) : new Date();
  time.dateTime = at.toISOString();
  time.textContent = clock(at);

  const badge = document.createElement('span');
  badge.className = 'badge';
  badge.textContent = kind;

  const text = document.createElement('span');
  text.className = 'msg';
  text.textContent = describeEvent(data);

  item.append(time, badge, text);
  if (lastEventId) item.title = `id ${lastEventId}`;
  const list = $('feed');
  list.prepend(item);
  while (list.children.length > FEED_LIMIT) list.lastElementChild.remove();
}

/** The message, or for an application event without one, its other fields. */
function describeEvent(data) {
  if (typeof data.message === 'string') return data.message;
  const { id, type, event, timestamp, ...rest } = data;
  return Object.keys(rest).length ? JSON.stringify(rest) : '';
}

const cssToken = (value) => String(value).replace(/[^a-z0-9-]/gi, '-');

function setUpFeed() {
  $('feed-pause').addEventListener('click', (event) => {
    feed.paused = !feed.paused;
    event.currentTarget.setAttribute('aria-pressed', String(feed.paused));
    event.currentTarget.textContent = feed.paused ? 'Resume' : 'Pause';
  });
  $('feed-clear').addEventListener('click', () => $('feed').replaceChildren());
  $('sse-reconnect').addEventListener('click', connectFeed);
  connectFeed();
}

// ---------------------------------------------------------------- JWT session

let session = null; // { username, token, tokenId, expiresIn }

function renderSession() {
  $('auth-user').textContent = session
    ? `${session.username} (token ${session.tokenId.slice(0, 8)}…, expires in ${session.expiresIn})`
    : 'signed out';
  $('auth-user').dataset.user = session?.username ?? '';
}

function setUpAuth() {
  const result = $('auth-result');
  $('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const username = $('login-username').value;
    const password = $('login-password').value;
    try {
      const answer = await api('/login', { method: 'POST', body: { username, password } });
      session = { username, token: answer.token, tokenId: answer.tokenId, expiresIn: answer.expiresIn };
      show(result, `${answer.message}. Token id ${answer.tokenId}.`);
    } catch (err) {
      showError(result, err);
    }
    renderSession();
  });

  $('logout').addEventListener('click', async () => {
    if (!session) {
      show(result, 'Not signed in.', false);
      return;
    }
    try {
      const answer = await api('/logout', { method: 'POST', token: session.token });
      show(result, `${answer.message}. The token is now revoked on the server.`);
    } catch (err) {
      showError(result, err);
    }
    // The token is unusable either way (revoked, expired or refused).
    session = null;
    renderSession();
  });

  $('call-protected').addEventListener('click', async () => {
    try {
      const answer = await api('/protected', { token: session?.token });
      show(result, `${answer.message}\n${json(answer.user)}`);
    } catch (err) {
      showError(result, err);
    }
  });
  renderSession();
}

// ---------------------------------------------------------------- priority queue

let queueRefreshTimer = null;

async function refreshQueue() {
  try {
    const status = await api('/queue/status', { token: session?.token });
    $('queue-size').textContent = String(status.size);
    $('queue-delayed').textContent = String(status.delayed);
    $('queue-leased').textContent = String(status.leased);
    $('queue-dead').textContent = String(status.dead);
    $('queue-next').textContent = status.nextTask
      ? `${status.nextTask.task} (priority ${status.nextTask.priority})`
      : 'empty';
    $('queue-next').classList.remove('error');
  } catch (err) {
    $('queue-next').textContent = err instanceof ApiError ? err.describe() : String(err);
    $('queue-next').classList.add('error');
  }
}

/** Coalesces the refreshes that a burst of queue events asks for. */
function refreshQueueSoon() {
  clearTimeout(queueRefreshTimer);
  queueRefreshTimer = setTimeout(() => {
    refreshQueue();
    refreshDead();
  }, 100);
}

function setUpQueue() {
  const result = $('queue-result');
  $('enqueue-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { task: $('enqueue-task').value, priority: $('enqueue-priority').valueAsNumber };
    const delayMs = $('enqueue-delay').valueAsNumber;
    const maxAttempts = $('enqueue-attempts').valueAsNumber;
    if (Number.isFinite(delayMs) && delayMs > 0) body.delayMs = delayMs;
    if (Number.isFinite(maxAttempts)) body.maxAttempts = maxAttempts;
    try {
      const answer = await api('/enqueue', { method: 'POST', body, token: session?.token });
      const when = answer.state === 'delayed' ? `, visible at ${clock(new Date(answer.availableAt))}` : '';
      show(result, `${answer.message}: "${answer.task}" (priority ${answer.priority}, ${answer.state}${when}), queue size ${answer.queueSize}.`);
      $('enqueue-task').value = '';
    } catch (err) {
      showError(result, err);
    }
    refreshQueue();
  });

  $('dequeue').addEventListener('click', async () => {
    try {
      const answer = await api('/dequeue', { method: 'POST', token: session?.token });
      const waited = ((Date.now() - answer.timestamp) / 1000).toFixed(1);
      show(result, `${answer.message}: "${answer.task}" (priority ${answer.priority}) after ${waited} s in the queue, ${answer.queueSize} left.`);
    } catch (err) {
      showError(result, err);
    }
    refreshQueue();
  });
  refreshQueue();
}

// ---------------------------------------------------------------- worker (leases)

// The leases this page holds, by task id: { task, priority, attempt, maxAttempts, leaseId, leaseExpiresAt }.
const held = new Map();
let heldTimer = null;
const DEAD_PAGE = 20;

/** Renders the held leases, each with its time left and its Ack and Nack buttons. */
function renderHeld() {
  const list = $('held');
  const now = Date.now();
  list.replaceChildren(
    ...[...held.entries()].map(([id, lease]) => {
      const left = Math.max(0, Math.ceil((lease.leaseExpiresAt - now) / 1000));
      return row(id, lease.task, `priority ${lease.priority}, attempt ${lease.attempt} of ${lease.maxAttempts}, lease ends in ${left} s`, [
        ['Ack', 'ack', () => settle(id, 'ack')],
        ['Nack', 'nack', () => settle(id, 'nack')],
      ]);
    }),
  );
  $('held-count').textContent = String(held.size);
  $('held-empty').hidden = held.size > 0;
  // A one-second tick keeps the time left current while any lease is held.
  if (held.size > 0 && heldTimer === null) heldTimer = setInterval(renderHeld, 1000);
  if (held.size === 0 && heldTimer !== null) {
    clearInterval(heldTimer);
    heldTimer = null;
  }
}

/** One row of a list: the task's text, a detail line and buttons. */
function row(id, text, detail, buttons, detailIsError = false) {
  const item = document.createElement('li');
  item.className = 'row';
  item.dataset.id = id;
  const what = document.createElement('span');
  what.className = 'what';
  what.textContent = text;
  const line = document.createElement('span');
  line.className = detailIsError ? 'detail error' : 'detail';
  line.textContent = detail;
  const actions = document.createElement('span');
  actions.className = 'actions';
  for (const [label, name, onClick] of buttons) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'small';
    button.dataset.action = name;
    button.textContent = label;
    button.addEventListener('click', onClick);
    actions.append(button);
  }
  item.append(what, line, actions);
  return item;
}

/** Acknowledges or nacks a held lease; a lost lease (409) or a vanished task (404) is let go. */
async function settle(id, action) {
  const lease = held.get(id);
  if (!lease) return;
  const result = $('worker-result');
  const body = { leaseId: lease.leaseId };
  if (action === 'nack') body.error = $('nack-error').value || undefined;
  try {
    const answer = await api(`/tasks/${encodeURIComponent(id)}/${action}`, { method: 'POST', body, token: session?.token });
    held.delete(id);
    if (action === 'ack') {
      show(result, `${answer.message}: "${lease.task}". It is gone for good.`);
    } else if (answer.state === 'dead') {
      show(result, `Nacked "${lease.task}": out of attempts, dead-lettered.`);
    } else {
      show(result, `Nacked "${lease.task}": delivered again at ${clock(new Date(answer.availableAt))}.`);
    }
  } catch (err) {
    if (err instanceof ApiError && (err.status === 409 || err.status === 404)) held.delete(id);
    showError(result, err);
  }
  renderHeld();
  refreshQueueSoon();
}

/** Lets go of a lease the event stream says this page no longer holds. */
function onQueueEvent(data) {
  const lease = held.get(data.taskId);
  if (!lease) return;
  if (data.event === 'queue.expired' || data.event === 'queue.deleted') {
    held.delete(data.taskId);
    show($('worker-result'), `The lease on "${lease.task}" ran out: the task is someone else's now.`, false);
    renderHeld();
  }
}

async function refreshDead() {
  const list = $('dead');
  try {
    const page = await api(`/queue/dead?limit=${DEAD_PAGE}`, { token: session?.token });
    list.replaceChildren(
      ...page.tasks.map((task) =>
        row(task.id, task.task, `priority ${task.priority}, ${task.attempt} attempts${task.lastError ? `: ${task.lastError}` : ''}`, [
          ['Retry', 'retry', () => dead(task, 'retry')],
          ['Delete', 'delete', () => dead(task, 'delete')],
        ], true),
      ),
    );
    $('dead-empty').textContent = page.next ? `More than ${DEAD_PAGE}: the oldest are shown.` : 'None.';
    $('dead-empty').hidden = page.tasks.length > 0 && !page.next;
  } catch (err) {
    list.replaceChildren();
    $('dead-empty').hidden = false;
    $('dead-empty').textContent = err instanceof ApiError ? err.describe() : String(err);
  }
}

/** Retries a dead letter (queued again, attempts reset) or deletes it. */
async function dead(task, action) {
  const result = $('worker-result');
  const id = encodeURIComponent(task.id);
  try {
    if (action === 'retry') {
      await api(`/queue/dead/${id}/retry`, { method: 'POST', token: session?.token });
      show(result, `"${task.task}" is queued again with its attempts reset.`);
    } else {
      await api(`/queue/dead/${id}`, { method: 'DELETE', token: session?.token });
      show(result, `"${task.task}" deleted.`);
    }
  } catch (err) {
    showError(result, err);
  }
  refreshQueueSoon();
}

function setUpWorker() {
  $('lease-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const result = $('worker-result');
    const button = $('lease-submit');
    const body = {
      count: $('lease-count').valueAsNumber,
      leaseMs: $('lease-ms').valueAsNumber,
      waitMs: $('lease-wait').valueAsNumber,
    };
    button.disabled = true;
    try {
      const answer = await api('/tasks/lease', { method: 'POST', body, token: session?.token });
      for (const task of answer.tasks) held.set(task.id, task);
      show(result, answer.tasks.length
        ? `Leased ${answer.tasks.map((task) => `"${task.task}"`).join(', ')}.`
        : `Nothing to lease${body.waitMs > 0 ? ` within ${body.waitMs} ms` : ''}.`, answer.tasks.length > 0);
    } catch (err) {
      showError(result, err);
    }
    button.disabled = false;
    renderHeld();
    refreshQueueSoon();
  });
  renderHeld();
  refreshDead();
}

// ---------------------------------------------------------------- CPU-heavy work

const runs = []; // { label, child, worker } durations in ms, or null for a failed side

function setUpHeavy() {
  $('heavy-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const n = $('heavy-n').value;
    const pool = $('heavy-pool').value;
    const button = $('heavy-run');
    button.disabled = true;
    $('heavy-child').textContent = 'running…';
    $('heavy-worker').textContent = 'running…';
    const probe = probeHealth();
    const [child, worker] = await Promise.allSettled([
      api(`/heavy-task-child?n=${encodeURIComponent(n)}`, { token: session?.token }),
      api(`/heavy-task-worker?n=${encodeURIComponent(n)}&pool=${encodeURIComponent(pool)}`, { token: session?.token }),
    ]);
    const slowest = probe.stop();
    button.disabled = false;

    const childMs = showHeavy($('heavy-child'), child, (a) => `pid ${a.processId}`);
    const workerMs = showHeavy($('heavy-worker'), worker, (a) => `${a.method}, thread ${a.threadId}`);
    const anyRan = childMs !== null || workerMs !== null;
    $('heavy-health').textContent = slowest === null || !anyRan
      ? ''
      : `Meanwhile /health answered within ${slowest.toFixed(0)} ms at worst: the async runtime stayed free.`;
    runs.push({ label: `n=${n} ${pool}`, child: childMs, worker: workerMs });
    if (runs.length > CHART_RUNS) runs.shift();
    drawChart();
  });
  drawChart();
}

/** Writes one side's outcome; returns its duration in ms, or null when it failed. */
function showHeavy(element, settled, where) {
  element.classList.toggle('error', settled.status === 'rejected');
  if (settled.status === 'rejected') {
    const err = settled.reason;
    element.textContent = err instanceof ApiError ? err.describe() : String(err);
    return null;
  }
  const answer = settled.value;
  element.textContent = `fib(${answer.input}) = ${answer.result} in ${answer.duration} (${where(answer)})`;
  const ms = Number.parseFloat(answer.duration);
  return Number.isFinite(ms) ? ms : null;
}

/** Times /health while heavy work runs; stop() returns the slowest answer in ms. */
function probeHealth() {
  let slowest = null;
  let running = true;
  const loop = async () => {
    while (running) {
      const started = performance.now();
      try {
        await api('/health');
        slowest = Math.max(slowest ?? 0, performance.now() - started);
      } catch {
        // A failed probe says nothing about latency; the heavy results show any error.
      }
      await new Promise((resolve) => setTimeout(resolve, HEALTH_PROBE_MS));
    }
  };
  loop();
  return {
    stop() {
      running = false;
      return slowest;
    },
  };
}

const SVG = 'http://www.w3.org/2000/svg';

function svg(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

/** Bar chart of the last runs: per run, the child's and the worker's duration. */
function drawChart() {
  const chart = $('heavy-chart');
  const [width, height, top, bottom] = [400, 160, 16, 22];
  chart.replaceChildren();
  if (runs.length === 0) {
    chart.append(svg('text', { x: width / 2, y: height / 2, class: 'chart-empty' }, 'No runs yet'));
    return;
  }
  const max = Math.max(1, ...runs.flatMap((run) => [run.child ?? 0, run.worker ?? 0]));
  const slot = width / CHART_RUNS;
  const bar = slot * 0.34;
  const plot = height - top - bottom;
  chart.append(svg('line', { x1: 0, x2: width, y1: height - bottom, y2: height - bottom, class: 'axis' }));
  runs.forEach((run, index) => {
    const x = index * slot + slot * 0.14;
    [['child', run.child], ['worker', run.worker]].forEach(([side, ms], offset) => {
      const barX = x + offset * bar;
      if (ms === null) {
        chart.append(svg('text', { x: barX + bar / 2, y: height - bottom - 4, class: 'bar-label failed' }, '×'));
        return;
      }
      const barHeight = Math.max(1, (ms / max) * plot);
      const y = height - bottom - barHeight;
      const rect = svg('rect', { x: barX, y, width: bar - 2, height: barHeight, class: `bar bar-${side}` });
      rect.append(svg('title', {}, `${run.label}: ${side} ${ms} ms`));
      chart.append(rect, svg('text', { x: barX + bar / 2 - 1, y: y - 3, class: 'bar-label' }, formatMs(ms)));
    });
    chart.append(svg('text', { x: x + bar, y: height - 6, class: 'run-label' }, run.label.split(' ')[0]));
  });
}

const formatMs = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms)}`);

// ---------------------------------------------------------------- streamed response

let streamAbort = null;

function setUpStream() {
  $('stream-form').addEventListener('submit', (event) => {
    event.preventDefault();
    runStream();
  });
  $('stream-stop').addEventListener('click', () => streamAbort?.abort());
}

async function runStream() {
  const total = $('stream-total').valueAsNumber;
  const params = new URLSearchParams({
    format: 'ndjson',
    totalItems: $('stream-total').value,
    chunkSize: $('stream-chunk').value,
    delay: $('stream-delay').value,
  });
  const progress = $('stream-progress');
  const status = $('stream-status');
  const result = $('stream-result');
  progress.max = Math.max(total, 1);
  progress.value = 0;
  result.hidden = true;
  streamAbort = new AbortController();
  setStreamRunning(true);

  const started = performance.now();
  let received = 0;
  let lastLine = '';
  const report = (state) => {
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0 ? Math.round(received / seconds) : 0;
    status.textContent = `${state}: ${received} / ${total} items in ${seconds.toFixed(1)} s (${rate} items/s)`;
  };
  try {
    const response = await fetch(`/stream?${params}`, { signal: streamAbort.signal });
    if (!response.ok) throw await errorFrom(response);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      const lines = buffered.split('\n');
      buffered = lines.pop();
      for (const line of lines) {
        if (line.trim() === '') continue;
        received += 1;
        lastLine = line;
      }
      progress.value = received;
      report('Streaming');
    }
    if (buffered.trim() !== '') {
      received += 1;
      lastLine = buffered;
    }
    progress.value = total === 0 ? 1 : received;
    report(received === total ? 'Done' : 'Ended early');
    if (lastLine) show(result, `Last item: ${prettyLine(lastLine)}`, received === total);
  } catch (err) {
    if (err.name === 'AbortError') {
      report('Stopped (the server stops producing when the client goes away)');
    } else {
      report('Failed');
      showError(result, err);
    }
  } finally {
    setStreamRunning(false);
    streamAbort = null;
  }
}

function prettyLine(line) {
  try {
    return json(JSON.parse(line));
  } catch {
    return line;
  }
}

function setStreamRunning(running) {
  $('stream-start').disabled = running;
  $('stream-stop').disabled = !running;
}

// ---------------------------------------------------------------- start

/**
 * Both heavy routes run side by side, so the input allows the smaller of their configured
 * maxima (CHILD_MAX_N, WORKER_MAX_N), read from the OpenAPI document the server generates.
 */
async function applyLimits() {
  try {
    const doc = await api('/openapi.json');
    const maximum = (path) =>
      doc.paths?.[path]?.get?.parameters?.find((p) => p.name === 'n')?.schema?.maximum;
    const limits = [maximum('/heavy-task-child'), maximum('/heavy-task-worker')];
    if (limits.every(Number.isInteger)) $('heavy-n').max = String(Math.min(...limits));
  } catch {
    // The page's own default stays: the server answers 400 past its maximum anyway.
  }
}

async function showVersion() {
  try {
    const health = await api('/health');
    $('server-version').textContent = `v${health.version}, ${health.environment}`;
  } catch {
    $('server-version').textContent = 'server unreachable';
  }
}

setUpFeed();
setUpAuth();
setUpQueue();
setUpWorker();
setUpHeavy();
setUpStream();
showVersion();
applyLimits();
document.body.dataset.ready = 'true';
