// Drives one headless Chromium page that uses the gateway's /client.js, for
// tests/tests/browser_e2e.rs. Talks to the test over stdout, one JSON object per line:
//   {"event":"ready"}                       the page is subscribed
//   {"event":"progress","count":N}          messages received so far (when it changes)
//   {"event":"done","numbers":[...], ...}   TOTAL messages received (or the time ran out)
//   {"event":"command","ack":{...}}         the page published a command
// Environment: BASE (gateway URL), TRANSPORT (ws | sse), TOTAL, TIMEOUT_MS, CHROMIUM.
//
//   BASE=http://127.0.0.1:8080 TRANSPORT=ws TOTAL=10 node tests/browser/run.mjs

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BASE = process.env.BASE;
const TRANSPORT = process.env.TRANSPORT || "ws";
const TOTAL = Number(process.env.TOTAL || "10");
const TIMEOUT_MS = Number(process.env.TIMEOUT_MS || "60000");
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const PAGE = `<!doctype html><meta charset="utf-8"><title>e2e</title>
<script type="module">
import { GatewayClient } from "/client.js";
const client = new GatewayClient("", {
  transport: ${JSON.stringify(TRANSPORT)},
  clientId: "e2e/page",
  backoffInitialMs: 100,
  backoffMaxMs: 1000,
});
window.received = [];
window.log = [];
window.opens = 0;
client.on("open", () => window.opens++);
client.on("reset", (r) => window.log.push("reset " + JSON.stringify(r)));
client.on("state", (s) => window.log.push("state " + s + " " + client.transport));
window.publishCommand = (n) => client.publish("cmd/e2e", { n }, { qos: 1 });
await client.subscribe("e2e/+/n", {}, (m) => window.received.push(m.data));
window.ready = true;
</script>`;

const dir = mkdtempSync(join(tmpdir(), "gw-chromium-"));
let context;
let code = 0;
try {
  context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => say({ event: "pageerror", message: String(e) }));
  if (process.env.DEBUG) page.on("console", (m) => say({ event: "console", text: m.text() }));
  // Open a real gateway URL first, so the page's origin and address space are the
  // gateway's (loopback), then write the test page into it.
  await page.goto(new URL("/", BASE).toString());
  await page.setContent(PAGE);
  await page.waitForFunction(() => window.ready === true, null, { timeout: 20000 });
  say({ event: "ready" });
  const deadline = Date.now() + TIMEOUT_MS;
  let last = -1;
  let numbers = [];
  while (Date.now() < deadline) {
    numbers = await page.evaluate(() => window.received);
    if (numbers.length !== last) {
      last = numbers.length;
      say({ event: "progress", count: last });
    }
    if (numbers.length >= TOTAL) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const log = await page.evaluate(() => window.log);
  const opens = await page.evaluate(() => window.opens);
  // Let a late duplicate show itself before reporting.
  await new Promise((r) => setTimeout(r, 300));
  numbers = await page.evaluate(() => window.received);
  say({ event: "done", numbers, log, opens });
  const ack = await page.evaluate(() => window.publishCommand(7));
  say({ event: "command", ack });
} catch (e) {
  say({ event: "failed", message: String(e && e.stack ? e.stack : e) });
  code = 1;
} finally {
  if (context) await context.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(code);
