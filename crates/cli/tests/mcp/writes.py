"""The write tools as an agent meets them, with the official Python MCP client over stdio:
`stripe-mirror mcp` on a mirror whose key may write, each write then a read of the mirror that
sees it, Stripe's refusals, bad arguments, the key edited in Stripe to lose a permission (the
refusal names it and the tool is no longer offered), and `--read-only`. Run by
crates/cli/tests/mcp.rs; prints one line per check and exits non-zero on the first failure."""
import asyncio
import json
import os
import sys
import urllib.request

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import McpError

WRITES = {
    "create_customer", "create_product", "create_price", "create_payment_link", "create_invoice",
    "create_invoice_item", "finalize_invoice", "create_refund", "cancel_subscription",
    "update_subscription", "create_coupon", "create_checkout_session",
}
READS = {"list_accounts", "search_customers", "get_customer", "list_objects", "get_object", "recent_events", "query_sql", "get_balance", "revenue_summary"}
KEY = os.environ["WRITE_KEY"]
answers = []


def check(ok, what):
    if not ok:
        print(f"problem: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def body(result):
    text = result.content[0].text
    answers.append(text)
    return json.loads(text)


def server(extra=()):
    return StdioServerParameters(
        command=os.environ["BIN"],
        args=json.loads(os.environ["ARGS"]) + list(extra),
        env={k: v for k, v in os.environ.items() if k in ("PATH", "XDG_CONFIG_HOME", "HOME")},
    )


async def tool(session, name, arguments):
    result = await session.call_tool(name, arguments)
    check(not result.isError, f"{name} succeeds: {result.content[0].text[:300]}")
    return body(result)


async def invalid(session, name, arguments, words):
    try:
        result = await session.call_tool(name, arguments)
        check(False, f"{name} {arguments} should be invalid params, got {result}")
    except McpError as error:
        check(error.error.code == -32602 and words in error.error.message,
              f"{name} {arguments}: invalid params ({error.error.message})")


async def main():
    async with stdio_client(server()) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name: t for t in (await session.list_tools()).tools}
            check(set(tools) == READS | WRITES, f"a key that may write gets every tool: {sorted(tools)}")
            check(tools["create_refund"].annotations.destructiveHint is True, "create_refund says it is destructive")
            check(tools["create_customer"].annotations.readOnlyHint is False
                  and tools["create_customer"].annotations.destructiveHint is False, "create_customer writes, destroys nothing")
            amount = tools["create_price"].inputSchema["properties"]["unit_amount"]
            check("maximum" in json.dumps(amount), f"create_price bounds its amount: {amount}")

            made = await tool(session, "create_customer", {"email": "ada@example.com", "name": "Ada Lovelace", "metadata": {"plan": "gold-zebra-42"}})
            customer = made["object"]["id"]
            check(made["in_mirror"] and customer.startswith("cus_"), f"create_customer: {made['done']}")
            stored = await tool(session, "get_object", {"id": customer})
            check(stored["email"] == "ada@example.com" and stored["metadata"]["plan"] == "gold-zebra-42", "the mirror has the new customer at once")
            found = await tool(session, "search_customers", {"text": "lovelace"})
            check(customer in [c["id"] for c in found["data"]], "search_customers finds it")
            by_metadata = await tool(session, "search_customers", {"text": "ZEBRA-42"})
            check([c["id"] for c in by_metadata["data"]] == [customer], "search_customers finds it by a metadata value")
            again = await tool(session, "create_customer", {"email": "retry@example.com", "idempotency_key": "agent-retry-1"})
            twice = await tool(session, "create_customer", {"email": "retry@example.com", "idempotency_key": "agent-retry-1"})
            check(again["object"]["id"] == twice["object"]["id"], "the same idempotency key makes one customer")

            product = (await tool(session, "create_product", {"name": "Gold plan"}))["object"]["id"]
            price_made = await tool(session, "create_price", {"product": product, "unit_amount": 1250, "currency": "usd", "recurring_interval": "month"})
            price = price_made["object"]["id"]
            check(price_made["done"] == f"Created price {price}: $12.50 per month", f"the amount in words: {price_made['done']}")
            yen = await tool(session, "create_price", {"product": product, "unit_amount": 1200, "currency": "jpy"})
            check(yen["done"].endswith("¥1,200"), f"a zero-decimal currency: {yen['done']}")
            link = await tool(session, "create_payment_link", {"price": price})
            check(link["object"]["url"].startswith("https://"), f"a payment link: {link['done']}")
            checkout = await tool(session, "create_checkout_session", {"price": price, "mode": "subscription", "success_url": "https://example.com/thanks", "customer": customer})
            check(checkout["object"]["id"].startswith("cs_"), f"a checkout session: {checkout['done']}")
            in_mirror = await tool(session, "get_object", {"id": checkout["object"]["id"]})
            check(in_mirror["id"] == checkout["object"]["id"], "the checkout session is in the mirror")

            invoice = (await tool(session, "create_invoice", {"customer": customer, "description": "Consulting"}))["object"]["id"]
            await tool(session, "create_invoice_item", {"customer": customer, "amount": 5000, "currency": "usd", "invoice": invoice, "description": "Two hours"})
            final = await tool(session, "finalize_invoice", {"invoice": invoice})
            check(final["object"]["status"] == "open" and "$50.00" in final["done"], f"finalize_invoice: {final['done']}")
            stored = await tool(session, "get_object", {"id": invoice})
            check(stored["status"] == "open" and stored["amount_due"] == 5000, "the mirror has the invoice open, with its line")

            charges = await tool(session, "query_sql", {"sql": "SELECT id, amount FROM charges WHERE status = 'succeeded' AND amount > 200 ORDER BY id LIMIT 1"})
            charge = charges["rows"][0][0]
            refund = await tool(session, "create_refund", {"charge": charge, "amount": 100, "reason": "requested_by_customer"})
            check(refund["object"]["amount"] == 100 and refund["in_mirror"], f"create_refund: {refund['done']}")
            stored = await tool(session, "get_object", {"id": refund["object"]["id"]})
            check(stored["charge"] == charge, "the refund is in the mirror")

            subs = await tool(session, "list_objects", {"table": "subscriptions", "filters": {"status": "active"}, "limit": 1})
            subscription = subs["data"][0]["id"]
            changed = await tool(session, "update_subscription", {"subscription": subscription, "quantity": 3})
            check(changed["object"]["items"]["data"][0]["quantity"] == 3, f"update_subscription: {changed['done']}")
            stored = await tool(session, "get_object", {"id": subscription})
            check(stored["items"]["data"][0]["quantity"] == 3, "the mirror has the new quantity")
            later = await tool(session, "cancel_subscription", {"subscription": subscription, "at_period_end": True})
            check(later["object"]["cancel_at_period_end"] is True, f"cancel at the period's end: {later['done']}")
            now = await tool(session, "cancel_subscription", {"subscription": subscription})
            check(now["object"]["status"] == "canceled", f"cancel now: {now['done']}")
            stored = await tool(session, "get_object", {"id": subscription})
            check(stored["status"] == "canceled", "the mirror has it canceled")

            coupon = await tool(session, "create_coupon", {"percent_off": 25, "duration": "repeating", "duration_in_months": 3, "name": "Spring"})
            check(coupon["object"]["percent_off"] == 25, f"create_coupon: {coupon['done']}")

            refused = await session.call_tool("create_price", {"product": "prod_DoesNotExist1", "unit_amount": 100, "currency": "usd"})
            text = refused.content[0].text
            check(refused.isError and "Stripe refused" in text and "req_" in text, f"Stripe's refusal with its request id: {text}")
            await invalid(session, "create_price", {"product": product, "unit_amount": -5, "currency": "usd"}, "unit_amount")
            await invalid(session, "create_price", {"product": product, "unit_amount": 5, "currency": "dollars"}, "currency")
            await invalid(session, "create_refund", {"charge": charge, "payment_intent": "pi_x"}, "one of them")
            await invalid(session, "create_coupon", {"percent_off": 10, "duration": "once", "duration_in_months": 2}, "duration_in_months")
            await invalid(session, "finalize_invoice", {"invoice": "in_../../v1/charges"}, "invoice")

            # The key is edited in Stripe: it may no longer write coupons.
            reads = [p for p in json.loads(os.environ["READ_PERMISSIONS"])]
            kept = reads + [p for p in json.loads(os.environ["WRITE_PERMISSIONS"]) if p != "rak_coupon_write"]
            request = urllib.request.Request(
                f"{os.environ['EMULATOR']}/_emulator/keys/permissions",
                data=json.dumps({"key": KEY, "permissions": kept}).encode(),
                headers={"content-type": "application/json"}, method="POST")
            urllib.request.urlopen(request).read()
            lost = await session.call_tool("create_coupon", {"amount_off": 500, "currency": "usd", "duration": "once"})
            text = lost.content[0].text
            check(lost.isError and "rak_coupon_write" in text and "Write on Coupons" in text and "update the key" in text,
                  f"the missing permission is named, with what to do: {text}")
            tools = {t.name for t in (await session.list_tools()).tools}
            check("create_coupon" not in tools and "create_customer" in tools, "after the re-probe create_coupon is no longer offered")
            again = await session.call_tool("create_coupon", {"amount_off": 500, "currency": "usd", "duration": "once"})
            check(again.isError and "rak_coupon_write" in again.content[0].text, "called anyway, it is refused before Stripe")

    async with stdio_client(server(["--read-only"])) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            check(tools == READS, f"--read-only serves the read tools only: {sorted(tools)}")
            try:
                await session.call_tool("create_customer", {"email": "x@example.com"})
                check(False, "a write tool answered under --read-only")
            except McpError as error:
                check(error.error.code == -32602, f"a write tool does not exist under --read-only ({error.error.message})")

    check(all(KEY not in a for a in answers), "the key is in no answer")
    print("all checks passed")


asyncio.run(main())
