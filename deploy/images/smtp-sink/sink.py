#!/usr/bin/env python3
"""A throwaway SMTP sink for development and the CI container stage.

Accepts every message (no relaying, nothing stored) and prints one JSON line per
message to stdout: envelope sender and recipients, Subject, Message-ID, the
decoded text part and every http(s) link in it. `docker compose logs mailsink`
shows them; scripts/ci/containers.sh reads the verification link from there.

    sink.py [--listen HOST:PORT]     (default 0.0.0.0:2525)

aiosmtpd comes from Debian's python3-aiosmtpd. Never use this for real mail.
"""

import argparse
import asyncio
import email
import email.policy
import json
import re
import signal
import sys

from aiosmtpd.smtp import SMTP

LINK = re.compile(r"https?://[^\s<>\"')]+")


def text_of(msg):
    """The text/plain part (or, failing that, the first text part), decoded."""
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        return part.get_content()
    except (LookupError, ValueError):
        return part.get_payload(decode=True).decode("utf-8", "replace")


class PrintHandler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content,
                                       policy=email.policy.default)
        text = text_of(msg)
        record = {
            "event": "message",
            "peer": str(session.peer[0]) if session.peer else None,
            "mail_from": envelope.mail_from,
            "rcpt_to": list(envelope.rcpt_tos),
            "subject": str(msg.get("Subject", "")),
            "message_id": str(msg.get("Message-ID", "")),
            "links": LINK.findall(text),
            "text": text,
        }
        print(json.dumps(record, ensure_ascii=False), flush=True)
        return "250 2.0.0 Message accepted (sink: not delivered)"


async def serve(host, port):
    loop = asyncio.get_running_loop()
    handler = PrintHandler()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp-sink", data_size_limit=10 * 1024 * 1024),
        host=host, port=port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"event": "listening", "address": f"{host}:{port}"}), flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="0.0.0.0:2525", help="HOST:PORT (default 0.0.0.0:2525)")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    asyncio.run(serve(host or "0.0.0.0", int(port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
