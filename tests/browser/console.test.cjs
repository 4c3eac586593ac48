// The web console in headless Chromium, against `callback-hub serve` on a fresh database.
// Run by scripts/browser-test.sh (which installs chromium and playwright-core and sets
// CALLBACK_HUB_BIN, CHROMIUM_BIN and NODE_PATH). Plain Node: no test framework.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { chromium } = require('playwright-core');

const ROOT = path.resolve(__dirname, '..', '..');
const EVENTS = path.join(ROOT, 'events');
const SHOTS = path.join(ROOT, 'test-reports', 'screenshots');
const TOKEN = 'browser-test-api-token-0001';
const SUBSCRIPTION = 'browser-test';

function log(...args) {
  console.log('[browser-test]', ...args);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function eventually(what, check, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}${last ? ': ' + last.message : ''}`);
}

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

// The subscriber: 500 while `failing`, 200 after; it records every request.
function receiver() {
  const state = { failing: true, received: [] };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      state.received.push({ id: req.headers['webhook-id'], failing: state.failing, body });
      res.writeHead(state.failing ? 500 : 200, { 'content-type': 'text/plain' });
      res.end(state.failing ? 'receiver is down for the test' : 'ok');
    });
  });
  return { state, server };
}

async function hub(port, method, urlPath, body, token = TOKEN) {
  const headers = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`http://127.0.0.1:${port}${urlPath}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : null };
}

// The senders' requests of events/ (what `callback-hub demo` replays), queries last.
async function sendSamples(port) {
  const files = fs.readdirSync(EVENTS)
    .filter((name) => name.endsWith('.json') && !['env.json', 'pinned-certs.json'].includes(name))
    .filter((name) => !name.includes('get-'))
    .sort();
  let accepted = 0;
  for (const name of files) {
    const sample = JSON.parse(fs.readFileSync(path.join(EVENTS, name), 'utf8'));
    const method = sample.requestContext.http.method;
    const query = sample.rawQueryString ? '?' + sample.rawQueryString : '';
    const headers = {};
    for (const [key, value] of Object.entries(sample.headers || {})) {
      if (!['host', 'content-length'].includes(key)) headers[key] = value;
    }
    let body;
    if (typeof sample.body === 'string') {
      body = sample.isBase64Encoded ? Buffer.from(sample.body, 'base64') : sample.body;
    }
    const response = await fetch(`http://127.0.0.1:${port}${sample.rawPath}${query}`, { method, headers, body });
    await response.text();
    assert.ok(response.status >= 200 && response.status < 300, `${name}: ${response.status}`);
    accepted += 1;
  }
  return accepted;
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'callback-hub-browser-'));
  const { state, server: receiverServer } = receiver();
  const receiverPort = await listen(receiverServer);
  const probe = http.createServer();
  const port = await listen(probe);
  await new Promise((resolve) => probe.close(resolve));

  const serve = spawn(process.env.CALLBACK_HUB_BIN, [
    'serve', '--listen', `127.0.0.1:${port}`, '--db', path.join(work, 'events.db'),
    '--env-file', path.join(EVENTS, 'local.env'),
  ], {
    cwd: ROOT,
    env: { ...process.env, API_TOKEN: TOKEN, WEBHOOKS_ALLOW_PRIVATE_NETWORKS: 'true', RUST_LOG: 'warn' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  let browser;
  try {
    await eventually('the hub to start', async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok);

    const created = await hub(port, 'POST', '/webhooks', {
      name: SUBSCRIPTION,
      description: 'the browser test receiver',
      url: `http://127.0.0.1:${receiverPort}/hook`,
    });
    assert.equal(created.status, 200, JSON.stringify(created.json));
    const sent = await sendSamples(port);
    log(`sent ${sent} samples`);
    await eventually('failed attempts at the receiver', async () => state.received.length >= 3);

    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_BIN,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const requests = [];
    page.on('request', (request) => requests.push(request.url()));
    const pageErrors = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    // Refused requests (the wrong token's 401) are logged by Chromium too; policy violations
    // are what matters here.
    page.on('console', (message) => {
      if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) pageErrors.push(message.text());
    });
    const base = `http://127.0.0.1:${port}/console`;

    // A wrong token: a clear error, and still signed out.
    await page.goto(base);
    await page.getByLabel('API token').fill('not-the-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#login-error').filter({ hasText: '401' }).waitFor();
    assert.match(await page.locator('#login-error').textContent(), /refused the API token/);
    await page.screenshot({ path: path.join(SHOTS, 'console-wrong-token.png') });

    // Sign in.
    await page.getByLabel('API token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('callback-hub-api-token')), TOKEN);
    await page.locator('.card h3', { hasText: 'stack' }).waitFor();
    await page.locator('table', { hasText: 'test-notification-url' }).first().waitFor();
    await page.locator('table', { hasText: SUBSCRIPTION }).first().waitFor();
    await page.screenshot({ path: path.join(SHOTS, 'console-overview.png'), fullPage: true });

    // Events: the table, then one event with its payload and deliveries.
    await page.getByRole('link', { name: 'Events' }).click();
    await page.getByRole('heading', { name: 'Events', level: 1 }).waitFor();
    await page.locator('#event-results table', { hasText: 'test-notification-url' }).waitFor();
    await page.getByLabel('Source', { exact: true }).selectOption('stack');
    await page.getByRole('button', { name: 'Show' }).click();
    await page.locator('#event-results table').waitFor();
    const sources = await page.locator('#event-results tbody tr td:nth-child(2)').allTextContents();
    assert.ok(sources.length > 0 && sources.every((s) => s === 'stack'), sources.join(','));
    await page.screenshot({ path: path.join(SHOTS, 'console-events.png'), fullPage: true });
    await page.locator('#event-results tbody tr td:nth-child(5) a').first().click();
    await page.getByRole('heading', { name: 'Payload' }).waitFor();
    assert.match(await page.locator('pre').textContent(), /test-notification-url/);
    await page.locator('table', { hasText: SUBSCRIPTION }).waitFor();
    await page.locator('dl.attrs dt', { hasText: 'Subject' }).waitFor();
    assert.doesNotMatch(await page.locator('main').textContent(), /\[object /);
    await page.screenshot({ path: path.join(SHOTS, 'console-event.png'), fullPage: true });

    // Stacks: a coloured badge with the latest status.
    await page.getByRole('link', { name: 'Stacks' }).click();
    await page.getByRole('heading', { name: 'Stacks', level: 1 }).waitFor();
    const badge = page.locator('tr', { hasText: 'test-notification-url' }).locator('.badge');
    await badge.waitFor();
    assert.equal(await badge.textContent(), 'UPDATE_COMPLETE');
    assert.match(await badge.getAttribute('class'), /complete/);
    await page.getByRole('button', { name: 'History of test-notification-url' }).click();
    await page.locator('ol.timeline li').nth(1).waitFor();
    const outputs = await page.locator('tr', { hasText: 'test-notification-url' }).textContent();
    assert.match(outputs, /Endpoint/);
    assert.doesNotMatch(await page.locator('main').textContent(), /\[object /);
    await page.screenshot({ path: path.join(SHOTS, 'console-stacks.png'), fullPage: true });

    // Subscriptions: the failing subscription, then its deliveries with every attempt.
    await page.getByRole('link', { name: 'Subscriptions' }).click();
    await page.getByRole('heading', { name: 'Subscriptions', level: 1 }).waitFor();
    const row = page.locator('tr', { hasText: SUBSCRIPTION });
    await row.waitFor();
    assert.match(await row.textContent(), /0%/);
    await page.screenshot({ path: path.join(SHOTS, 'console-subscriptions.png'), fullPage: true });
    await row.getByRole('link', { name: SUBSCRIPTION }).click();
    await page.getByRole('heading', { name: `Subscription ${SUBSCRIPTION}` }).waitFor();
    const failed = page.locator('section.card', { hasText: '500' }).first();
    await failed.waitFor();
    const label = await failed.getAttribute('aria-label');
    const deliveryId = label.replace(/^Delivery /, '');
    await page.screenshot({ path: path.join(SHOTS, 'console-subscription.png'), fullPage: true });

    // The receiver recovers; replaying the failed delivery from the page succeeds.
    state.failing = false;
    await failed.getByRole('button', { name: 'Replay this delivery' }).click();
    await page.locator('#notice', { hasText: 'Replayed 1 delivery' }).waitFor();
    await eventually('the replayed delivery to be delivered', async () => {
      const listing = await hub(port, 'GET', `/webhooks/${SUBSCRIPTION}/deliveries?limit=100`);
      const delivery = listing.json.deliveries.find((d) => d.id === deliveryId);
      return delivery && delivery.state === 'delivered';
    });
    assert.ok(state.received.some((r) => r.id === deliveryId && !r.failing), 'the receiver got the replay');
    await page.reload();
    const replayed = page.locator(`section[aria-label="Delivery ${deliveryId}"]`);
    await replayed.locator('.badge', { hasText: 'delivered' }).waitFor();
    await page.screenshot({ path: path.join(SHOTS, 'console-replayed.png'), fullPage: true });

    // Nothing left this origin; the token never appeared in a URL.
    const origin = `http://127.0.0.1:${port}/`;
    assert.deepEqual(requests.filter((url) => !url.startsWith(origin)), []);
    assert.ok(requests.every((url) => !url.includes(TOKEN)), 'the token is never in a URL');
    assert.deepEqual(pageErrors, []);
    log('every page showed its data; screenshots in', SHOTS);
  } finally {
    if (browser) await browser.close();
    serve.kill('SIGTERM');
    receiverServer.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error('[browser-test] FAILED:', err.stack || err.message);
  process.exit(1);
});
