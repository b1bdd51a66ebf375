"""A tiny loopback SMTP server for the email connector's tests (no third-party package)."""

from __future__ import annotations

import base64
import email
import email.policy
import socketserver
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage


@dataclass
class Delivery:
    mail_from: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class Script:
    """How the server answers; tests change it before the client connects."""

    greeting: str | None = "220 localhost test SMTP"
    auth: tuple[str, str] | None = None
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 2.0.0 queued"


class _Handler(socketserver.StreamRequestHandler):
    server: SMTPServer

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        script = self.server.script
        if script.greeting is None:
            return
        self.reply(script.greeting)
        if not script.greeting.startswith("2"):
            return
        mail_from, recipients = "", []
        while line := self.rfile.readline():
            command = line.decode().rstrip("\r\n")
            verb, _, argument = command.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                features = ["localhost", "8BITMIME"]
                if script.auth:
                    features.append("AUTH PLAIN")
                for feature in features[:-1]:
                    self.reply(f"250-{feature}")
                self.reply(f"250 {features[-1]}")
            elif verb == "AUTH":
                _, _, encoded = argument.partition(" ")
                user, password = script.auth or ("", "")
                ok = base64.b64decode(encoded) == f"\0{user}\0{password}".encode()
                self.reply("235 2.7.0 ok" if ok else "535 5.7.8 bad credentials")
            elif verb == "MAIL":
                mail_from, recipients = argument.split(":", 1)[1].strip("<> "), []
                self.reply("250 OK")
            elif verb == "RCPT":
                address = argument.split(":", 1)[1].strip("<> ")
                answer = script.rcpt_replies.get(address, "250 OK")
                if answer.startswith("2"):
                    recipients.append(address)
                self.reply(answer)
            elif verb == "DATA":
                self.reply("354 go ahead")
                lines = []
                while (data := self.rfile.readline()) != b".\r\n":
                    lines.append(data[1:] if data.startswith(b"..") else data)
                if script.data_reply.startswith("2"):
                    message = email.message_from_bytes(b"".join(lines), policy=email.policy.default)
                    self.server.deliveries.append(Delivery(mail_from, recipients, message))
                self.reply(script.data_reply)
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            else:
                self.reply("502 not implemented")


class SMTPServer(socketserver.ThreadingTCPServer):
    """Listens on 127.0.0.1 (random port); records what it accepts in `deliveries`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = Script()
        self.deliveries: list[Delivery] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def __enter__(self) -> SMTPServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
