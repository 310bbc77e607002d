// The dashboard's seed flow in a real browser: Debian's Chromium driven by playwright-core (no
// browser download), each page checked by axe-core, a screenshot of each saved. Run by
// crates/cli/tests/dashboard.rs, which starts the emulator and `stripe-mirror serve` and passes
// what this needs in the environment; it prints one line per step and exits non-zero on the
// first failure.
import { chromium } from "playwright-core";
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import { createServer } from "node:http";

const require = createRequire(import.meta.url);
const AXE = require.resolve("axe-core/axe.min.js");
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env("DASHBOARD");
const EMULATOR = env("EMULATOR");
const SHOTS = env("SCREENSHOTS");
const TOKEN = env("TOKEN");
const KEY = env("KEY_NO_WEBHOOK");
const REPLACEMENT = env("KEY_REPLACEMENT");
const LIVE_KEY = env("KEY_LIVE");
const PUBLISHABLE = env("KEY_PUBLISHABLE");
const ACCOUNT = env("ACCOUNT_ID");
const LABEL = `${ACCOUNT}:test`;
mkdirSync(SHOTS, { recursive: true });

const problems = [];
const step = (text) => console.log(`step: ${text}`);
const check = (ok, text) => {
  if (!ok) throw new Error(`check failed: ${text}`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
  ],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
page.on("console", (message) => {
  if (message.type() === "error") problems.push(`console error on ${page.url()}: ${message.text()}`);
});
page.on("pageerror", (error) => problems.push(`page error on ${page.url()}: ${error.message}`));

/// Every control on the page reached with Tab alone, in order from the first (a radio group
/// counts once: arrows move within it). Returns the names of the ones never reached.
const unreachable = async () => {
  const total = await page.evaluate(() => {
    let index = 0;
    const groups = new Set();
    const controls = document.querySelectorAll("a[href], button, input, select, textarea, summary");
    for (const control of controls) {
      delete control.dataset.reach;
      // Not shown (a closed menu's items are reached by opening it: checked on its own).
      if (control.disabled || control.type === "hidden" || !control.checkVisibility()) continue;
      if (control.type === "radio") {
        if (groups.has(control.name)) continue;
        groups.add(control.name);
        document.querySelectorAll(`input[type=radio][name="${control.name}"]`).forEach((r) => { r.dataset.reach = index; });
      } else {
        control.dataset.reach = index;
      }
      index += 1;
    }
    const first = document.querySelector("[data-reach]");
    if (first) first.focus();
    return index;
  });
  const reached = new Set(["0"]);
  for (let presses = 0; presses < total + 10 && reached.size < total; presses++) {
    await page.keyboard.press("Tab");
    const index = await page.evaluate(() => document.activeElement?.dataset?.reach);
    if (index !== undefined) reached.add(index);
  }
  return await page.evaluate((seen) => [...document.querySelectorAll("[data-reach]")]
    .filter((c) => !seen.includes(c.dataset.reach))
    .map((c) => `${c.tagName.toLowerCase()} "${(c.innerText || c.name || c.id || "").trim().slice(0, 40)}"`), [...reached]);
};

/// axe-core on the page as it is: no serious or critical violation; every control reachable
/// by keyboard; a screenshot.
const audit = async (name) => {
  // A live part may replace what was counted mid-walk: one more walk before calling it a problem.
  let missed = await unreachable();
  if (missed.length) missed = await unreachable();
  if (missed.length) problems.push(`not reachable by keyboard on ${name}: ${missed.join(", ")}`);
  const bytes = await page.evaluate(() => document.documentElement.outerHTML.length);
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of bad) {
    problems.push(`axe ${v.impact} on ${name}: ${v.id} (${v.help}) at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  }
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
  console.log(`page ${name}: ${bytes} bytes of HTML, ${bad.length} serious or critical axe violations, ${missed.length} controls out of keyboard reach`);
};
const text = async () => await page.locator("main").innerText();
const emulator = async (path, body) => {
  const answer = await fetch(`${EMULATOR}/_emulator${path}`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  check(answer.ok, `emulator ${path} answered ${answer.status}`);
};
/// The mirror's REST API, with the same token.
const api = async (method, path) => {
  const answer = await fetch(`${BASE}/api/v1${path}`, {
    method, headers: { authorization: `Bearer ${TOKEN}` },
  });
  check(answer.ok, `${method} ${path} answered ${answer.status}`);
  return await answer.json();
};
/// Marks the page, so that a later check can tell it was not loaded again.
const mark = async () => await page.evaluate(() => { window.notReloaded = true; });
const stillMarked = async () => await page.evaluate(() => window.notReloaded === true);
/// Waits until the main content contains `words` (the cards update live, over SSE).
const waitFor = async (words, timeout = 30000) => {
  await page.locator("main", { hasText: words }).waitFor({ timeout });
};
const card = () => page.locator(`[data-connection="${LABEL}"]`);
const menu = async (item) => {
  await card().locator("details.menu summary").click();
  await card().getByText(item, { exact: true }).click();
};

try {
  step("no session: the dashboard sends you to sign in");
  await page.goto(`${BASE}/accounts`);
  check(page.url().includes("/signin"), `expected the sign-in page, got ${page.url()}`);
  await audit("01-signin");

  step("a wrong token is refused in words");
  await page.fill("#token", "smt_not_a_real_token");
  await page.click("button[type=submit]");
  check((await text()).includes("not valid"), "the refusal says the token is not valid");

  step("sign in");
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.waitForURL(`${BASE}/accounts`);
  check((await text()).includes("No Stripe account connected yet"), "the empty state shows");
  await audit("02-accounts-empty");

  step("new connection: bad keys get errors in words, inline");
  await page.click("text=New connection");
  await page.waitForURL(`${BASE}/accounts/new`);
  await audit("03-new-connection");
  const tryKey = async (key, live, expect) => {
    await page.check(live ? "input[value=live]" : "input[value=test]");
    await page.fill("#api_key", key);
    await page.click("form.connect button[type=submit]");
    const shown = await text();
    check(shown.includes(expect), `after ${key.slice(0, 8)}… expected "${expect}", saw: ${shown.slice(0, 400)}`);
    check(!(await page.content()).includes(key), "a key is never echoed back");
    check((await page.inputValue("#api_key")) === "", "the key field is empty again");
  };
  await tryKey(PUBLISHABLE, false, "publishable");
  await tryKey("whsec_0123456789abcdefghijklmnop", false, "whsec_");
  await tryKey(LIVE_KEY, false, "live");
  await tryKey("rk_test_Zq8xW2vK9pLm4Tn7Rb3Yc6HdZq8xW2vK9pLm4Tn7Rb3Yc6Hd", false, "API key is invalid");
  await audit("04-new-connection-error");

  step("connect a restricted test key without webhook write: the missing permission is named");
  await page.check("input[value=test]");
  await page.fill("#api_key", KEY);
  await page.fill("#name", "Browser Co");
  await page.click("form.connect button[type=submit]");
  await waitFor("Connected Browser Co");
  check((await text()).includes("rak_webhook_write"), "the page names rak_webhook_write as missing");
  await audit("05-connected");

  step("the Accounts page: the card, its first sync finishing live");
  await page.click("text=Go to Accounts");
  await waitFor("Up to date", 60000);
  const shown = await card().innerText();
  for (const expected of [ACCOUNT, "Test", "restricted", "Last sync", "Rows mirrored"]) {
    check(shown.includes(expected), `the card shows ${expected}: ${shown}`);
  }
  await audit("06-accounts");

  step("the ⋮ menu by keyboard");
  await card().locator("details.menu summary").focus();
  await page.keyboard.press("Enter");
  check(await card().locator("details.menu").evaluate((d) => d.open), "Enter opens the menu");
  const items = await card().locator("details.menu li").allInnerTexts();
  for (const item of items) {
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => document.activeElement.innerText);
    check(focused === item, `Tab reaches the menu's "${item}" (focus on "${focused}")`);
  }
  await page.screenshot({ path: `${SHOTS}/07-menu-open.png` });
  await page.keyboard.press("Escape");
  check(!(await card().locator("details.menu").evaluate((d) => d.open)), "Escape closes it");

  step("sync now, and watch it finish");
  await menu("Sync now");
  await waitFor("A sync was asked for");
  await waitFor("Up to date", 60000);

  step("view syncs: what started each; a sync asked for elsewhere shows up live");
  await menu("View syncs");
  await waitFor("Syncs of Browser Co");
  const runs = page.locator("tbody tr:not(.detail)");
  check((await runs.count()) >= 2, "two syncs or more are listed");
  const triggers = await page.locator("tbody tr:not(.detail) td:nth-child(4)").allInnerTexts();
  check(triggers.includes("dashboard") && triggers.includes("new connection"), `triggers: ${triggers}`);
  await audit("08-syncs");
  await mark();
  await api("POST", `/connections/${encodeURIComponent(LABEL)}/syncs`);
  await page.locator("tbody tr:not(.detail) td:nth-child(4)", { hasText: "api" }).first().waitFor({ timeout: 60000 });
  await page.locator("tbody tr:not(.detail)").first().locator("td:nth-child(5)", { hasText: /succeeded|partial/ }).waitFor({ timeout: 60000 });
  check(await stillMarked(), "the syncs table changed without a reload");
  await page.goto(`${BASE}/accounts`);

  step("set the start date");
  await menu("Set sync start date");
  await page.fill("#start", "2024-01-01");
  await page.click("main form button[type=submit]");
  await waitFor("The start date was saved");

  step("the key is revoked in Stripe: the card says so, and Update API key mends it");
  await emulator("/keys/revoke", { key: KEY });
  await menu("Sync now");
  await waitFor("Action required: API key is invalid", 60000);
  await audit("09-key-invalid");
  await page.goto(`${BASE}/accounts/${LABEL}/syncs`);
  await waitFor("What to do: Update API key");
  await page.screenshot({ path: `${SHOTS}/09b-syncs-failed.png`, fullPage: true });
  await page.goto(`${BASE}/accounts`);
  await card().locator("p.status a", { hasText: "Update API key" }).click();
  await page.fill("#api_key", REPLACEMENT);
  await page.click("main form button[type=submit]");
  await waitFor("The API key was updated");
  await waitFor("Up to date", 60000);

  step("rename");
  await menu("Rename / logo");
  await page.fill("#name", "Browser Renamed");
  await page.click("main form button[type=submit]");
  await waitFor("Browser Renamed");

  step("permissions");
  await menu("Permissions");
  await waitFor("What this key may do");
  await audit("10-permissions");
  await page.goto(`${BASE}/accounts`);

  step("events: the latest, a type filter, each opening its object");
  await card().getByRole("link", { name: "Events", exact: true }).click();
  await waitFor("Events of Browser Renamed");
  check((await page.locator("tbody tr").count()) > 0, "events are listed");
  await audit("13-events");
  step("events: new ones arrive at the top while the page is open");
  await mark();
  const topBefore = await page.locator("tbody tr").first().innerText();
  await emulator(`/accounts/${ACCOUNT}/activity`, { mode: "test", changes: 5 });
  await api("POST", `/connections/${encodeURIComponent(LABEL)}/syncs`);
  await page.waitForFunction(
    (top) => document.querySelector("tbody tr").innerText !== top, topBefore, { timeout: 60000 });
  check(await stillMarked(), "the new events came without a reload");
  await page.fill("#type", "invoice.*");
  await page.click("form.filter button");
  const types = await page.locator("tbody tr td:nth-child(2)").allInnerTexts();
  check(types.length > 0 && types.every((t) => t.startsWith("invoice.")), `only invoice events: ${types}`);
  await page.locator("tbody tr td:nth-child(3) a").first().click();
  await waitFor("Open in Stripe's dashboard");
  const json = await page.locator("pre.json").innerText();
  check(json.includes('"object": "invoice"'), "the object's JSON is shown");
  check((await page.locator("pre.json a").count()) > 0, "ids of other mirrored objects are links");
  await audit("14-object");

  step("data: tables with their rows, a table's page");
  await page.click("nav.tabs >> text=Data");
  await waitFor("Data of Browser Renamed");
  await audit("15-data");
  await page.click("text=customers");
  await waitFor("customers of Browser Renamed");
  check((await page.locator("tbody tr").count()) >= 3, "the customers are listed");

  step("SQL: an answer as a table; a write refused in words");
  await page.click("header >> text=SQL");
  await page.fill("#sql", "SELECT count(*) AS customers FROM customers");
  await page.click("main form button.primary");
  await waitFor("1 rows");
  await audit("16-sql");
  await page.fill("#sql", "DELETE FROM customers");
  await page.click("main form button.primary");
  await waitFor("Not done");
  const download = page.waitForEvent("download");
  await page.fill("#sql", "SELECT id, email FROM customers ORDER BY id");
  await page.click("main form button[value=csv]");
  const csv = await (await download).path();
  const { readFileSync } = await import("node:fs");
  check(readFileSync(csv, "utf8").startsWith("id,email\r\n"), "the CSV starts with its header");
  await page.goto(`${BASE}/accounts`);

  step("settings: a token made and shown once, then revoked; the configuration");
  await page.click("header >> text=Settings");
  await waitFor("Configuration");
  await page.fill("#token-name", "second");
  await page.click("main form button.primary");
  await waitFor("it is not shown again");
  const made = await page.locator("#new-token").innerText();
  check(made.startsWith("smt_") && made.length === 68, "the new token is shown");
  await audit("17-settings");
  await page.click('button[aria-label="Revoke second"]');
  await waitFor("Revoked second.");
  check(!(await page.content()).includes(made), "the token is not shown again");
  await page.goto(`${BASE}/accounts`);

  step("reports: each connection's revenue as figures, a chart, a table and a CSV download");
  await page.click("header >> text=Reports");
  await waitFor("Browser Renamed");
  await audit("18-reports");
  await page.click("main >> text=Browser Renamed");
  await waitFor("Revenue of Browser Renamed");
  check((await page.locator("figure.chart svg rect").count()) > 0, "the summary draws a bar per period");
  check((await page.locator("main table thead").innerText()).includes("mrr end"), "the summary's table has MRR at each end");
  await audit("18b-reports-summary");
  await page.click("nav.tabs.sub >> text=Net revenue");
  await waitFor("gross sales");
  await page.selectOption("#interval", "week");
  await page.click("form.filter button");
  await waitFor("net revenue");
  await audit("18c-reports-revenue-weekly");
  const report = page.waitForEvent("download");
  await page.click("text=Download CSV");
  const reportCsv = await (await report).path();
  check(readFileSync(reportCsv, "utf8").startsWith("period,currency,gross_sales"), "the report's CSV starts with its header");
  await page.goto(`${BASE}/accounts/${encodeURIComponent(LABEL)}/reports/mrr?from=2026-02-30`);
  await waitFor("from must be a date");
  await page.goto(`${BASE}/accounts`);

  step("notifications: a signed webhook channel added (its secret shown once), tested, a rule; a gone channel fails in words");
  const received = [];
  const receiver = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => { body += chunk; });
    request.on("end", () => {
      received.push({
        path: request.url, body, signature: request.headers["webhook-signature"],
        id: request.headers["webhook-id"], timestamp: request.headers["webhook-timestamp"],
      });
      response.writeHead(request.url === "/gone" ? 410 : 200, { "content-type": "text/plain" });
      response.end(request.url === "/gone" ? "channel_is_archived" : "ok");
    });
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const sink = `http://127.0.0.1:${receiver.address().port}`;
  await page.click("header >> text=Notifications");
  await waitFor("No channels yet");
  await page.fill("#channel-name", "billing-hook");
  await page.selectOption("#channel-kind", "webhook");
  await page.fill("#channel-url", `${sink}/in`);
  await page.click("text=Add the channel");
  await waitFor("it is not shown again");
  check((await page.locator("#signing-secret").innerText()).startsWith("whsec_"), "the signing secret is shown once");
  check(!(await text()).includes(`${sink}/in`), "the URL is shown masked");
  await page.click('button[aria-label="Send test to billing-hook"]');
  await waitFor("billing-hook took the test message.");
  await waitFor("Working");
  check(received.length === 1 && received[0].signature?.startsWith("v1,"), "the receiver got one signed message");
  await page.fill("#rule-name", "payments");
  await page.check("input[name=include_test]");
  await page.fill("#rule-min", "10usd");
  await page.click("text=Add the rule");
  await waitFor("Added the rule payments");
  check((await text()).includes("from $10.00"), "the rule is shown in words");
  await page.click("summary >> text=Add a channel");
  await page.fill("#channel-name", "archived");
  await page.selectOption("#channel-kind", "slack");
  await page.fill("#channel-url", `${sink}/gone`);
  await page.click("text=Add the channel");
  await waitFor("Added archived");
  await page.click('button[aria-label="Send test to archived"]');
  await waitFor("the test message to \"archived\" was not taken");
  await waitFor("Failing: HTTP 410");
  await audit("19-notifications");
  await page.click('button[aria-label="Remove archived"]');
  await waitFor("Removed archived");
  // A webhook channel with the receiver's own secret: nothing is shown once, and the test
  // message is signed with that secret.
  const ownKey = Buffer.from("stripe-mirror-dashboard-test-key!");
  await page.click("summary >> text=Add a channel");
  await page.fill("#channel-name", "own-secret");
  await page.selectOption("#channel-kind", "webhook");
  await page.fill("#channel-url", `${sink}/own`);
  await page.fill("#channel-secret", `whsec_${ownKey.toString("base64")}`);
  await page.click("text=Add the channel");
  await waitFor("Added own-secret");
  check((await page.locator("#signing-secret").count()) === 0, "a given secret is not shown");
  await page.click('button[aria-label="Send test to own-secret"]');
  await waitFor("own-secret took the test message.");
  const own = received.find((r) => r.path === "/own");
  const { createHmac } = await import("node:crypto");
  const expected = createHmac("sha256", ownKey).update(`${own.id}.${own.timestamp}.${own.body}`).digest("base64");
  check(own.signature === `v1,${expected}`, "signed with the secret given in the form");
  receiver.close();

  step("finding a connection that is not there says so");
  await page.goto(`${BASE}/accounts?q=no-such-shop`);
  await waitFor("No connection matches");
  await page.goto(`${BASE}/accounts?q=renamed`);
  check((await card().count()) === 1, "a filter that matches shows the card");
  await page.goto(`${BASE}/accounts`);

  step("a form posted without its CSRF value is refused");
  const forged = await page.request.post(`${BASE}/accounts/${encodeURIComponent(LABEL)}/sync`, {
    form: { nothing: "1" }, maxRedirects: 0,
  });
  check(forged.status() === 403, `a post without _csrf answered ${forged.status()}`);

  step("the page at 360 px wide");
  await page.setViewportSize({ width: 360, height: 800 });
  await page.reload();
  await audit("11-accounts-360px");
  for (const path of ["/accounts", `/accounts/${LABEL}/syncs`, `/accounts/${LABEL}/events`, "/settings"]) {
    await page.goto(`${BASE}${path}`);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    check(wide <= 360, `${path} fits 360 px without scrolling sideways (it is ${wide} px wide)`);
  }
  await page.goto(`${BASE}/accounts/${LABEL}/syncs`);
  await page.screenshot({ path: `${SHOTS}/20-syncs-360px.png`, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });

  step("remove: a confirmation that says what goes, then the data is gone");
  await page.goto(`${BASE}/accounts`);
  await menu("Remove connection");
  check((await text()).includes("deletes every row"), "the confirmation says the data goes");
  await audit("12-remove-confirm");
  await page.click("button.danger");
  await waitFor("The connection was removed");
  await waitFor("No Stripe account connected yet");

  step("sign out: the dashboard asks to sign in again");
  await page.click("header button[type=submit]");
  await page.waitForURL(/\/signin/);
  await page.goto(`${BASE}/accounts`);
  check(page.url().includes("/signin"), "signed out means signed out");
} catch (error) {
  await page.screenshot({ path: `${SHOTS}/failure.png`, fullPage: true }).catch(() => {});
  problems.push(`${error.message} (at ${page.url()})`);
}
await browser.close();
if (problems.length) {
  for (const p of problems) console.log(`problem: ${p}`);
  process.exit(1);
}
console.log("all steps passed");
