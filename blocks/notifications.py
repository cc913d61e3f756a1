"""Notification blocks Prefect's server runs when a job-notice automation fires.

Why blocks of ours: Prefect's ``send-notification`` action calls ``notify(subject, body)`` on a
notification block, and ``call-webhook`` calls ``call(payload)`` on a ``Webhook`` block, *in the
Prefect server process* (prefect/server/events/actions.py). Prefect has no plain-SMTP
notification block, and neither of its blocks records what it did where the job's answers can
show it. So: ``OpevaEmail`` (SMTP) and ``OpevaWebhook`` (Prefect's Webhook, subclassed: the
action checks ``isinstance(block, Webhook)``), each sending the notice core/notify.py defines and
recording every attempt as a Prefect artifact of type ``opeva-notification`` on the job's flow
run (kept in Prefect's database, shown on the run's Artifacts tab, read back by the API for
``/job-info`` and ``/status``).

The server can only load a block whose class it can import: deployments/prefect_server.py
imports this module and calls :func:`record_in_this_server` (records then go through the
server's in-memory API, no URL or credential needed). Anywhere else (the API's test send) the
caller records what :meth:`deliver` returns.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any, Literal

from prefect.blocks.abstract import NotificationBlock, NotificationError
from prefect.blocks.webhook import Webhook
from pydantic import Field, SecretStr

from core.notify import ARTIFACT_TYPE, delivery_record, email_subject, email_text, parse_notice, record_summary, redacted_url

SMTP_TIMEOUT_SECONDS = 15
_IN_SERVER = False


def record_in_this_server() -> None:
    """Called by the Prefect server's entry point: records go through its in-memory API."""
    global _IN_SERVER
    _IN_SERVER = True


def artifact_body(record: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"type": ARTIFACT_TYPE, "data": record, "description": record_summary(record)}
    if record.get("job_id"):
        body["flow_run_id"] = record["job_id"]
    return body


async def _record(record: dict[str, Any]) -> None:
    """Store one attempt as an artifact; a failure to record never hides the delivery's own outcome."""
    import logging

    try:
        if _IN_SERVER:
            from prefect.server.api.clients import BaseClient

            async with BaseClient() as server:
                response = await server._http_client.post("/artifacts/", json=artifact_body(record))
                response.raise_for_status()
        else:
            from prefect.client.orchestration import get_client

            async with get_client() as client:
                await client.request("POST", "/artifacts/", json=artifact_body(record))  # type: ignore[arg-type]
    except Exception as exc:
        logging.getLogger("opeva.notifications").warning("could not record a notification attempt: %s", exc)


def _notice_of(body: str, subject: str | None, channel_id: str | None) -> dict[str, Any]:
    """Our notice, or a free-text one (a body typed in Prefect's UI) sent as it is."""
    return parse_notice(body) or {"kind": "text", "channel_id": channel_id, "job_id": None, "text": body, "subject": subject}


class OpevaEmail(NotificationBlock):
    """E-mail through an SMTP server (plain, STARTTLS or SSL), one message per notice."""

    _block_type_name = "OPEVA E-mail"
    _block_type_slug = "opeva-email"
    _description = "Sends OPEVA job notices by e-mail through an SMTP server and records each attempt on the job."

    to: list[str] = Field(description="Recipients.")
    smtp_host: str
    smtp_port: int = 25
    from_address: str = "opeva@localhost"
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str = ""
    password: SecretStr = SecretStr("")
    channel_id: str | None = Field(None, description="The OPEVA channel this block belongs to (set by the API).")

    async def notify(self, body: str, subject: str | None = None) -> None:
        record = await self.deliver(_notice_of(body, subject, self.channel_id))
        await _record(record)
        if not record["published"]:
            raise NotificationError(log=record.get("error") or "e-mail not sent")

    async def deliver(self, notice: dict[str, Any]) -> dict[str, Any]:
        """Send ``notice``; the attempt's record (never raises for a delivery failure)."""
        subject = (notice.get("subject") if notice.get("kind") == "text" else None) or email_subject(notice)
        message = EmailMessage()
        message["Subject"], message["From"], message["To"] = subject, self.from_address, ", ".join(self.to)
        message.set_content(notice["text"] if notice.get("kind") == "text" else email_text(notice))
        error = None
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        return delivery_record(notice, channel="email", channel_id=self.channel_id, recipients=list(self.to), subject=subject,
                               ok=error is None, error=error, smtp={"host": self.smtp_host, "port": self.smtp_port})

    def _send(self, message: EmailMessage) -> None:
        if self.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.smtp_host, self.smtp_port, timeout=SMTP_TIMEOUT_SECONDS, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=SMTP_TIMEOUT_SECONDS)
        with smtp:
            if self.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password.get_secret_value())
            smtp.send_message(message)


class OpevaWebhook(Webhook):
    """Prefect's Webhook, recording each call (status code or error) on the job."""

    _block_type_name = "OPEVA Webhook"
    _block_type_slug = "opeva-webhook"
    _description = "Posts OPEVA job notices (JSON) to a URL and records each attempt on the job."

    channel_id: str | None = Field(None, description="The OPEVA channel this block belongs to (set by the API).")

    async def call(self, payload: dict[str, Any] | str | None = None) -> Any:
        text = payload if isinstance(payload, str) else ""
        notice = parse_notice(text) or {"kind": "text", "channel_id": self.channel_id, "job_id": None}
        response, record = await self._call_and_record(payload, notice)
        await _record(record)
        if response is None:
            raise RuntimeError(record["error"])  # Prefect's action turns this into "Webhook call failed"
        return response

    async def deliver(self, notice: dict[str, Any]) -> dict[str, Any]:
        import json

        return (await self._call_and_record(json.dumps(notice), notice))[1]

    async def _call_and_record(self, payload: Any, notice: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        self.block_initialization()  # Webhook.call closes its client after each call: a fresh one each time
        try:
            response = await super().call(payload=payload)
        except Exception as exc:  # refused, timed out, a private address refused
            return None, self._record_of(notice, ok=False, error=f"{type(exc).__name__}: {exc}")
        ok = 200 <= response.status_code < 300
        return response, self._record_of(notice, ok=ok, error=None if ok else f"HTTP {response.status_code}", status_code=response.status_code)

    def _record_of(self, notice: dict[str, Any], *, ok: bool, error: str | None, **extra: Any) -> dict[str, Any]:
        return delivery_record(notice, channel="webhook", channel_id=self.channel_id, recipients=[redacted_url(self.url.get_secret_value())],
                               subject=None, ok=ok, error=error, **extra)
