"""Reads the mirror through Stripe's official Python SDK (`pip install stripe`): the SDK's API
key is a mirror token, its API base the mirror's /stripe, Stripe-Account the connection.
Prints one JSON object of what it saw, for the Rust test to check."""
import json
import os

import stripe

stripe.api_key = os.environ["MIRROR_TOKEN"]
stripe.api_base = os.environ["MIRROR_BASE"] + "/stripe"
account = os.environ["MIRROR_ACCOUNT"]
seen = {"sdk_version": stripe.VERSION}

first = stripe.Customer.list(limit=3, stripe_account=account)
seen["first_ids"] = [c.id for c in first.data]
seen["has_more"] = first.has_more
every = [c.id for c in stripe.Customer.list(limit=7, stripe_account=account).auto_paging_iter()]
seen["customers"] = every
seen["retrieved"] = stripe.Customer.retrieve(every[-1], stripe_account=account).id
seen["subscription_statuses"] = sorted(
    {s.status for s in stripe.Subscription.list(limit=100, stripe_account=account).auto_paging_iter()}
)
seen["active_only"] = sorted(
    {s.status for s in stripe.Subscription.list(status="active", limit=100, stripe_account=account).auto_paging_iter()}
)
try:
    stripe.Customer.retrieve("cus_nope", stripe_account=account)
    seen["missing"] = "answered"
except stripe.InvalidRequestError as error:
    seen["missing"] = error.code
try:
    stripe.Customer.list(api_key="smt_wrong", stripe_account=account)
    seen["wrong_token"] = "answered"
except stripe.AuthenticationError:
    seen["wrong_token"] = "refused"
print(json.dumps(seen))
