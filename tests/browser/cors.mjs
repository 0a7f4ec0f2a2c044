// Drives headless Chromium against a running worker-pool, as a web page on
// another origin would use it. Run by tests/browser.rs:
//
//   node tests/browser/cors.mjs API_ORIGIN PAGE_PORT MODULES_DIR
//
// API_ORIGIN is the server (http://127.0.0.1:PORT), started with
// CORS_ALLOWED_ORIGINS=http://127.0.0.1:PAGE_PORT; MODULES_DIR holds
// node_modules/playwright-core. It serves a blank page on PAGE_PORT (the
// allowed origin) and on a second port (an origin not allowed), and checks:
// - from the allowed origin: a JSON POST (preflighted) creates a task, a GET
//   reads it back, and the listing with limit=1 is followed to its end by the
//   Link header read with response.headers.get('Link');
// - from the other origin: the answer to a GET cannot be read (fetch rejects),
//   and neither a JSON POST nor a text/plain POST goes through (the server
//   refuses the latter with 403; tests/browser.rs checks no task was made).
// Prints a JSON summary on stdout; exits 1 on any failure, with the reason.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const [api, pagePortText, modulesDir] = process.argv.slice(2);
if (!api || !pagePortText || !modulesDir) {
  console.error('usage: node cors.mjs API_ORIGIN PAGE_PORT MODULES_DIR');
  process.exit(2);
}
const { chromium } = createRequire(path.join(path.resolve(modulesDir), 'package.json'))('playwright-core');

// The whole run is bounded: a hang is a failure, not a stuck CI job.
setTimeout(() => {
  console.error('cors.mjs: timed out after 90 s');
  process.exit(1);
}, 90_000).unref();

/** Serves a blank page on 127.0.0.1:port (0 for any); resolves to the port. */
function servePage(port) {
  const server = http.createServer((request, response) => {
    response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    response.end('<!doctype html><title>worker-pool CORS test</title>');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** What the page on the allowed origin does; runs in the browser. */
async function allowedPage(api) {
  const timeout = () => AbortSignal.timeout(10_000);
  const json = {
    'Content-Type': 'application/json',
    'X-Request-Id': 'cors-test-1',
    'X-Client': 'worker-pool-browser-test',
  };
  const created = [];
  for (const title of ['one', 'two', 'three']) {
    const body = JSON.stringify({ title, description: 'from a page on another origin' });
    const response = await fetch(`${api}/tasks`, { method: 'POST', headers: json, body, signal: timeout() });
    created.push({ status: response.status, task: await response.json() });
  }
  const read = await fetch(`${api}/tasks/${created[0].task.id}`, { signal: timeout() });
  const readBack = { status: read.status, task: await read.json() };
  const links = [];
  const listed = [];
  let url = `${api}/tasks?limit=1`;
  while (url && listed.length <= 10) {
    const page = await fetch(url, { signal: timeout() });
    listed.push(...(await page.json()).map((task) => task.id));
    const link = page.headers.get('Link');
    links.push(link);
    url = link ? new URL(link.match(/^<([^>]*)>/)[1], api).href : null;
  }
  return { created, readBack, listed, links };
}

/** What a page on an origin not allowed tries; runs in the browser. */
async function foreignPage(api) {
  const attempt = (request) =>
    request.then(
      (response) => `read ${response.status}`,
      (error) => `rejected: ${error.message}`,
    );
  const signal = () => AbortSignal.timeout(10_000);
  return {
    get: await attempt(fetch(`${api}/tasks/1`, { signal: signal() })),
    json: await attempt(
      fetch(`${api}/tasks`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: '{"title":"json from a foreign page"}',
        signal: signal(),
      }),
    ),
    plain: await attempt(
      fetch(`${api}/tasks`, {
        method: 'POST',
        headers: { 'Content-Type': 'text/plain' },
        body: '{"title":"text/plain from a foreign page"}',
        signal: signal(),
      }),
    ),
  };
}

/** The headers Chromium sent with the first POST /tasks. */
function recordPostHeaders(page) {
  let headers = null;
  page.on('request', (request) => {
    if (request.method() === 'POST' && request.url() === `${api}/tasks` && headers === null) {
      headers = request.headersArray();
    }
  });
  return () => headers;
}

async function main() {
  const allowedServer = await servePage(Number(pagePortText));
  const foreignServer = await servePage(0);
  const foreignPort = foreignServer.address().port;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'worker-pool-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 30_000,
  });
  try {
    // A cookie for the API's host: sent with the page's own requests; a
    // cross-origin fetch leaves it out (no credentials asked or allowed).
    await context.addCookies([{ name: 'session', value: 'x'.repeat(64), url: api }]);
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const postHeaders = recordPostHeaders(page);
    await page.goto(`http://127.0.0.1:${pagePortText}/`);
    const allowed = await page.evaluate(allowedPage, api);
    const sent = await postHeaders();
    await page.goto(`http://127.0.0.1:${foreignPort}/`);
    const foreign = await page.evaluate(foreignPage, api);
    const summary = { allowed, foreign, postHeaders: sent.map(({ name }) => name) };
    check(summary);
    console.log(JSON.stringify(summary));
  } finally {
    await context.close();
    allowedServer.close();
    foreignServer.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

/** Everything the page saw, as expected. */
function check({ allowed, foreign, postHeaders }) {
  assert.deepEqual(
    allowed.created.map(({ status, task }) => [status, task.title]),
    [
      [201, 'one'],
      [201, 'two'],
      [201, 'three'],
    ],
  );
  const { status, task } = allowed.readBack;
  assert.deepEqual([status, task.id, task.title], [200, allowed.created[0].task.id, 'one']);
  const ids = allowed.created.map(({ task }) => task.id);
  assert.deepEqual(allowed.listed, ids);
  assert.deepEqual(allowed.links, [
    `</tasks?after=${ids[0]}&limit=1>; rel="next"`,
    `</tasks?after=${ids[1]}&limit=1>; rel="next"`,
    null,
  ]);
  assert.ok(postHeaders.length >= 17, `the POST carried ${postHeaders.length} headers: ${postHeaders}`);
  // Credentials are neither asked for nor allowed (no
  // Access-Control-Allow-Credentials): the API's cookie stays home.
  assert.ok(!postHeaders.some((name) => name.toLowerCase() === 'cookie'), `${postHeaders}`);
  for (const [what, outcome] of Object.entries(foreign)) {
    assert.match(outcome, /^rejected: /, `foreign ${what}: ${outcome}`);
  }
}

main().catch((error) => {
  console.error(`cors.mjs: ${error.stack ?? error}`);
  process.exit(1);
});
