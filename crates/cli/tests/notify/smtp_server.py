"""A real SMTP server for the notification test (aiosmtpd): TLS required before AUTH — by STARTTLS
(mode `starttls`) or from the first byte (mode `implicit`, as on port 465) — one user and password, one recipient refused with 550, each message accepted appended to a file as
a JSON line (sender, recipients, whether TLS was on, the message). Prints "ready" when it
listens.

Usage: smtp_server.py PORT CERT KEY OUT USER PASSWORD REFUSED_RECIPIENT starttls|implicit
"""

import json
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, out, user, password, refused, mode = sys.argv[1:9]


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == refused:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with open(out, "a") as f:
            f.write(json.dumps({
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                # STARTTLS sets the session's `ssl`; implicit TLS only shows on the transport.
                "tls": session.ssl is not None
                or server.transport.get_extra_info("ssl_object") is not None,
                "data": envelope.content.decode("utf-8", "replace"),
            }) + "\n")
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user \
            and auth_data.password.decode() == password:
        return AuthResult(success=True)
    return AuthResult(success=False, handled=False)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
if mode == "implicit":
    # aiosmtpd counts only STARTTLS as TLS when it decides whether to offer AUTH; here the
    # socket is TLS before the first byte, so requiring it again would hide AUTH.
    tls = {"ssl_context": context, "auth_require_tls": False}
else:
    tls = {"tls_context": context, "require_starttls": True}
controller = Controller(
    Handler(), hostname="127.0.0.1", port=int(port), authenticator=authenticate,
    auth_required=True, **tls,
)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
