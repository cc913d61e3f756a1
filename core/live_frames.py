"""What a site's live message becomes on ``WS /ws/data``: the one mapping between the two shapes.

Why one place: the UI reads ``GET /historical-data/{site}`` items and live frames with the
same mapper (energaize_ui ``mapBuildingItem``: ``timestamp``, ``community``, ``observations``),
so a reading must have the same field names whichever way it arrives. A site publishes the
document it stores in MongoDB (docs/live-data.md). History answers it through
:func:`core.sites.json_safe` without ``_id``; a live frame gets exactly the same treatment:

- the body is parsed as JSON, MongoDB Extended JSON included (``{"$date": ...}``,
  ``{"$oid": ...}``, as ``bson.json_util`` or ``mongoexport`` write them), then rendered by
  ``json_safe``: dates as ISO 8601 in UTC, ids as hex, exactly as history renders them;
- a top-level ``_id`` is dropped (history projects it away);
- plain JSON without those comes out with the same fields and values;
- a body that is not JSON (or not UTF-8) is relayed as ``{"raw": "<text>"}`` (upstream's rule),
  undecodable bytes replaced.

The API renders each message once per exchange, whatever the number of clients
(core/live_fanout.py shares the frame).
"""

from __future__ import annotations

import json
from typing import Any

from bson import json_util

from core.sites import json_safe


def _parse(text: str) -> Any:
    if "$" in text:  # Extended JSON needs bson's hook; plain JSON takes the fast C parser
        return json_util.loads(text)
    return json.loads(text)


def to_frame(body: bytes) -> str:
    """The JSON text sent to WebSocket clients for one AMQP message body."""
    raw = json.dumps({"raw": body.decode("utf-8", errors="replace")}, ensure_ascii=False)
    try:
        value = _parse(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, TypeError):
        return raw
    if isinstance(value, dict):
        value.pop("_id", None)
    try:  # NaN/Infinity parse in Python but are not JSON: a browser's JSON.parse would throw
        return json.dumps(json_safe(value), ensure_ascii=False, allow_nan=False)
    except ValueError:
        return raw
