"""Calls `stripe-mirror mcp` with the official Python MCP client (the `mcp` package), over
stdio: lists the tools, calls each, and checks bad arguments. Run by crates/cli/tests/mcp.rs,
which passes the binary, its arguments and the account in the environment; prints one line per
check and exits non-zero on the first failure."""
import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import McpError


def check(ok, what):
    if not ok:
        print(f"problem: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def body(result):
    return json.loads(result.content[0].text)


async def main():
    server = StdioServerParameters(
        command=os.environ["BIN"],
        args=json.loads(os.environ["ARGS"]),
        env={k: v for k, v in os.environ.items() if k in ("PATH", "XDG_CONFIG_HOME", "HOME")},
    )
    account = os.environ["ACCOUNT"]
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            info = await session.initialize()
            check(info.serverInfo.name == "stripe-mirror", f"the server is stripe-mirror: {info.serverInfo}")
            tools = {t.name: t for t in (await session.list_tools()).tools}
            check(
                set(tools) == {"list_accounts", "search_customers", "get_customer", "list_objects", "get_object", "recent_events", "query_sql", "get_balance", "revenue_summary"},
                f"the read tools are listed: {sorted(tools)}",
            )
            check(all(t.annotations and t.annotations.readOnlyHint for t in tools.values()), "every tool says it only reads")
            limit = tools["list_objects"].inputSchema["properties"]["limit"]
            check("maximum" in json.dumps(limit), f"list_objects bounds its limit: {limit}")

            accounts = body(await session.call_tool("list_accounts", {}))
            check(len(accounts) == 1 and accounts[0]["account"] == account, f"list_accounts: {accounts}")
            check(accounts[0]["status"] == "Up to date", "the account is up to date")
            check("rk_" not in json.dumps(accounts) or "…" in accounts[0]["key"], "no key in clear")

            page = body(await session.call_tool("list_objects", {"table": "customers", "limit": 2}))
            check(len(page["data"]) == 2 and page["has_more"] and page["next_cursor"], "a first page of customers")
            more = body(await session.call_tool("list_objects", {"table": "customers", "limit": 2, "starting_after": page["next_cursor"]}))
            check(more["data"][0]["id"] != page["data"][0]["id"], "the cursor pages on")
            email = page["data"][0]["email"]
            found = body(await session.call_tool("list_objects", {"table": "customers", "filters": {"email": email}}))
            check([c["email"] for c in found["data"]] == [email], "customers found by email")

            part = email.split("@")[0][-6:].upper()
            searched = body(await session.call_tool("search_customers", {"text": part}))
            check(email in [c["email"] for c in searched["data"]], f"search_customers finds {email} by {part!r}")
            quoted = body(await session.call_tool("search_customers", {"text": "o'neil_%"}))
            check(quoted["data"] == [], "quotes and wildcards in the text are taken literally")

            overview = body(await session.call_tool("get_customer", {"customer": email}))
            check(overview["customer"]["email"] == email and {"subscriptions", "invoices", "payments"} <= set(overview),
                  f"get_customer by email: {len(overview['subscriptions'])} subscriptions, {len(overview['invoices'])} invoices, {len(overview['payments'])} payments")
            paid = body(await session.call_tool("query_sql", {"sql": "SELECT customer FROM charges WHERE customer IS NOT NULL AND currency = 'usd' LIMIT 1"}))
            payer = body(await session.call_tool("get_customer", {"customer": paid["rows"][0][0], "limit": 3}))
            first = payer["payments"][0]
            check(len(payer["payments"]) <= 3 and first["amount_formatted"].startswith("$"),
                  f"a customer's payments, amounts in words: {first['amount']} → {first['amount_formatted']}")
            balance = body(await session.call_tool("get_balance", {}))
            check(balance["available"] and all("formatted" in f for f in balance["available"]),
                  f"get_balance from Stripe: {[f['formatted'] for f in balance['available']]}")

            revenue = body(await session.call_tool("revenue_summary", {}))
            usd = revenue["summary"]["usd"]
            check(usd["mrr"] > 0 and usd["mrr_formatted"].startswith("$") and len(revenue["periods"]) == 12,
                  f"revenue_summary: MRR {usd['mrr_formatted']}, ARR {usd['arr_formatted']}, {usd['subscribers']} subscribers")
            last = revenue["periods"][-1]
            moved = sum(last[k] for k in ("new", "reactivation", "expansion", "contraction", "churn"))
            check(abs(last["mrr_end"] - last["mrr_start"] - moved) <= 5, f"the movements add up: {last}")

            customer = body(await session.call_tool("get_object", {"id": page["data"][0]["id"]}))
            check(customer["object"] == "customer" and customer["id"] == page["data"][0]["id"], "get_object by id alone")

            events = body(await session.call_tool("recent_events", {"types": ["invoice.*"], "limit": 5}))
            check(events["data"] and all(e["type"].startswith("invoice.") for e in events["data"]), "recent invoice events")

            counted = body(await session.call_tool("query_sql", {"sql": "SELECT count(*) AS n FROM customers"}))
            check(counted["rows"][0][0] >= 3, f"query_sql counts: {counted}")
            refused = await session.call_tool("query_sql", {"sql": "DELETE FROM customers"})
            check(refused.isError and "query_refused" in refused.content[0].text, f"a write is refused: {refused.content[0].text}")

            missing = await session.call_tool("get_object", {"id": "cus_DoesNotExist1"})
            check(missing.isError and "not_found" in missing.content[0].text, "an unknown object is a tool error")
            for name, arguments, words in [
                ("list_objects", {"table": "no_such_table"}, "no_such_table"),
                ("list_objects", {"table": "customers", "limit": 500}, "limit"),
                ("get_object", {"id": "mystery"}, "table"),
                ("get_customer", {"customer": "nobody@nowhere.example"}, "no customer"),
                ("search_customers", {"text": "  "}, "1 to 200"),
                ("revenue_summary", {"interval": "year"}, "day, week or month"),
                ("revenue_summary", {"from": "2026-13-01"}, "from must be a date"),
                ("list_objects", {"table": "customers", "account": "acct_1Nobody"}, "no connected account"),
            ]:
                try:
                    result = await session.call_tool(name, arguments)
                    check(False, f"{name} {arguments} should be invalid params, got {result}")
                except McpError as error:
                    check(error.error.code == -32602 and words in error.error.message, f"{name} {arguments}: invalid params ({error.error.message})")
    print("all checks passed")


asyncio.run(main())
