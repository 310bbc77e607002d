"""The agent tools on `serve`'s /mcp (streamable HTTP) with the official Python MCP client: a
full token gets every tool the key allows, and a write is seen by the next read; a read-only
token gets the read tools; a wrong token is refused before any tool. Run by
crates/cli/tests/mcp.rs; prints one line per check and exits non-zero on the first failure."""
import asyncio
import json
import os
import sys

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

URL = os.environ["MCP_URL"]
READS = {"list_accounts", "search_customers", "get_customer", "list_objects", "get_object", "recent_events", "query_sql", "get_balance", "revenue_summary"}


def check(ok, what):
    if not ok:
        print(f"problem: {what}")
        sys.exit(1)
    print(f"ok: {what}")


async def tools_for(token):
    async with streamablehttp_client(URL, headers={"Authorization": f"Bearer {token}"}) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return {t.name for t in (await session.list_tools()).tools}


async def main():
    async with streamablehttp_client(URL, headers={"Authorization": f"Bearer {os.environ['TOKEN']}"}) as (read, write, _):
        async with ClientSession(read, write) as session:
            info = await session.initialize()
            check(info.serverInfo.name == "stripe-mirror", "initialize over HTTP")
            tools = {t.name for t in (await session.list_tools()).tools}
            check(READS < tools and "create_customer" in tools, f"a full token gets reads and writes: {sorted(tools)}")
            accounts = json.loads((await session.call_tool("list_accounts", {})).content[0].text)
            check(len(accounts) == 1, f"list_accounts over HTTP: {accounts[0]['name']}")
            made = await session.call_tool("create_customer", {"email": "http@example.com"})
            check(not made.isError, f"create_customer over HTTP: {made.content[0].text[:120]}")
            customer = json.loads(made.content[0].text)["object"]["id"]
            seen = json.loads((await session.call_tool("get_object", {"id": customer})).content[0].text)
            check(seen["email"] == "http@example.com", "the next read sees the write")

    read_only = await tools_for(os.environ["READ_TOKEN"])
    check(read_only == READS, f"a read-only token gets the read tools only: {sorted(read_only)}")

    answer = httpx.post(URL, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                        headers={"Authorization": "Bearer smt_wrong", "accept": "application/json, text/event-stream"})
    check(answer.status_code == 401 and "tools" not in answer.text and answer.headers.get("www-authenticate", "").startswith("Bearer"),
          f"a wrong token is refused: {answer.status_code} {answer.text}")
    answer = httpx.post(URL, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                        headers={"Authorization": f"Bearer {os.environ['TOKEN']}", "Host": "rebound.example.net",
                                 "accept": "application/json, text/event-stream"})
    check(answer.status_code == 403, f"an unknown Host is refused: {answer.status_code}")
    print("all checks passed")


asyncio.run(main())
