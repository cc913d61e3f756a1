"""EV chargers of a building, per time step, from the documents that carry
``charging_sessions`` and ``electric_vehicles`` (the real OPEVA layout).

Why per-step arrays: they are folded document by document while the cursor is
drained (memory grows with time steps x chargers, never with documents), and the
charger CSV is then read off them. Arrival and departure times come from the EV's
own estimates (``electric_vehicles.<ev>.flexibility.estimated_time_at_*``), which
the upstream builder left empty; when an EV gives none, the times the data shows
(the end of its plugged-in run, the step before it plugs in) fill them.

Charger CSV (CityLearn 2.5 and OPEVA's fork; 6 columns, read by position):
state 1 = plugged in, 2 = arriving, 3 = away; times in time steps from now; SoC in %.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

CHARGER_CSV_COLUMNS = [
    "electric_vehicle_charger_state", "electric_vehicle_id", "electric_vehicle_departure_time",
    "electric_vehicle_required_soc_departure", "electric_vehicle_estimated_arrival_time",
    "electric_vehicle_estimated_soc_arrival",
]
PLUGGED, ARRIVING, AWAY = 1, 2, 3
_CLOCK = re.compile(r"^\d{1,2}:\d{2}(:\d{2})?$")


def _percent(value: Any) -> float:
    """SoC as %, from a fraction (0-1) or a percentage; NaN when not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        return np.nan
    return float(value) * 100 if value <= 1 else float(min(value, 100.0))


def parse_when(value: Any, ref: datetime, zone: ZoneInfo) -> datetime | None:
    """A time estimate as UTC: a BSON date, ISO text, a local clock time ``HH:MM`` (the
    next one after ``ref``) or epoch seconds/milliseconds; None when unreadable."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 1e9:
        return datetime.fromtimestamp(value / 1000 if value > 1e12 else value, tz=timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        if _CLOCK.match(text):
            local = ref.astimezone(zone)
            t = time.fromisoformat(text if text.count(":") == 2 else text + ":00")
            when = datetime.combine(local.date(), t, tzinfo=zone)
            return (when if when > local else when + timedelta(days=1)).astimezone(timezone.utc)
        try:
            ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    return None


def sessions_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Both session forms as ``[{charger, ev, soc, flexibility}]``:
    ``{<charger>: {power, electric_vehicle}}`` or ``[{charger_id, power, user_id, soc, flexibility}]``."""
    raw = doc.get("charging_sessions")
    out = []
    if isinstance(raw, dict):
        for charger, s in raw.items():
            if isinstance(s, dict) and s.get("electric_vehicle"):
                out.append({"charger": str(charger), "ev": str(s["electric_vehicle"]), "soc": s.get("soc"), "flexibility": s.get("flexibility")})
    elif isinstance(raw, list):
        for s in raw:
            if isinstance(s, dict) and s.get("charger_id") is not None:
                ev = s.get("electric_vehicle") or s.get("ev_id") or s.get("user_id")
                if ev:
                    out.append({"charger": str(s["charger_id"]), "ev": str(ev), "soc": s.get("soc"), "flexibility": s.get("flexibility")})
    return out


class ChargerTracker:
    """Per charger and time step: who is plugged in or on the way, and their estimates."""

    def __init__(self, charger_ids: list[str], steps: int, start: datetime, period_s: int, zone: str) -> None:
        self.ids = list(charger_ids)
        self.steps, self.start, self.period_s, self.zone = steps, start.timestamp(), period_s, ZoneInfo(zone)
        shape = (len(self.ids), steps)
        self.ev = np.full(shape, None, dtype=object)
        self.departure = np.full(shape, np.nan)
        self.required = np.full(shape, np.nan)
        self.plug_soc = np.full(shape, np.nan)
        self.next_ev = np.full(shape, None, dtype=object)
        self.arrival = np.full(shape, np.nan)
        self.arrival_soc = np.full(shape, np.nan)
        self.evs: dict[str, dict[str, float]] = {}  # EVs seen: first SoC (fraction) for initial_soc
        self.unknown_chargers: set[str] = set()
        self._col = {c: k for k, c in enumerate(self.ids)}

    def _step(self, when: datetime | None) -> float:
        return np.nan if when is None else float(np.floor((when.timestamp() - self.start) / self.period_s))

    def add(self, i: int, ts: datetime, doc: dict[str, Any]) -> None:
        vehicles = doc.get("electric_vehicles") if isinstance(doc.get("electric_vehicles"), dict) else {}
        plugged = set()
        for s in sessions_of(doc):
            k = self._col.get(s["charger"])
            if k is None:
                self.unknown_chargers.add(s["charger"])
                continue
            ev = s["ev"]
            info = vehicles.get(ev) if isinstance(vehicles.get(ev), dict) else {}
            flex = info.get("flexibility") if isinstance(info.get("flexibility"), dict) else (s["flexibility"] if isinstance(s["flexibility"], dict) else {})
            soc = info.get("SoC", s["soc"])
            self._seen(ev, soc)
            plugged.add(ev)
            self.ev[k, i] = ev
            self.departure[k, i] = self._step(parse_when(flex.get("estimated_time_at_departure"), ts, self.zone))
            self.required[k, i] = _percent(flex.get("estimated_soc_at_departure"))
            self.plug_soc[k, i] = _percent(soc)
        for ev, info in vehicles.items():
            if ev in plugged or not isinstance(info, dict):
                continue
            flex = info.get("flexibility") if isinstance(info.get("flexibility"), dict) else {}
            k = self._col.get(str(flex.get("charger")))
            if k is None:
                continue
            arrival = self._step(parse_when(flex.get("estimated_time_at_arrival"), ts, self.zone))
            if arrival == arrival and arrival > i:
                self._seen(str(ev), info.get("SoC"))
                self.next_ev[k, i] = str(ev)
                self.arrival[k, i] = arrival
                self.arrival_soc[k, i] = _percent(flex.get("estimated_soc_at_arrival"))

    def _seen(self, ev: str, soc: Any) -> None:
        if ev not in self.evs:
            pct = _percent(soc)
            self.evs[ev] = {"initial_soc": round(pct / 100, 4) if pct == pct else 0.5}

    def frame(self, charger_id: str) -> tuple[pd.DataFrame, dict[str, int]]:
        """The charger CSV, and how many times were estimated vs filled from the data."""
        k = self._col[charger_id]
        n = self.steps
        ev, dep, req, plug_soc = self.ev[k], self.departure[k], self.required[k], self.plug_soc[k]
        state = np.full(n, AWAY, dtype=int)
        ids = np.full(n, "", dtype=object)
        dep_out, req_out, arr_out, arr_soc_out = (np.full(n, np.nan) for _ in range(4))
        counts = {"departure_estimated": 0, "departure_from_data": 0, "arrival_estimated": 0, "arrival_from_data": 0}
        i = 0
        while i < n:  # plugged-in runs: consecutive steps with the same EV
            if ev[i] is None:
                i += 1
                continue
            j = i
            while j + 1 < n and ev[j + 1] == ev[i]:
                j += 1
            for t in range(i, j + 1):
                state[t], ids[t] = PLUGGED, ev[i]
                if dep[t] == dep[t] and dep[t] > t:
                    dep_out[t] = dep[t] - t
                    counts["departure_estimated"] += 1
                else:
                    dep_out[t] = j + 1 - t
                    counts["departure_from_data"] += 1
                req_out[t] = req[t]
            if i >= 1 and ev[i - 1] is None and self.next_ev[k, i - 1] is None:
                state[i - 1], ids[i - 1], arr_out[i - 1], arr_soc_out[i - 1] = ARRIVING, ev[i], 1, plug_soc[i]
                counts["arrival_from_data"] += 1
            i = j + 1
        coming = (state == AWAY) & (self.next_ev[k] != None)  # noqa: E711 (element-wise)
        for t in np.flatnonzero(coming):
            state[t], ids[t] = ARRIVING, self.next_ev[k, t]
            arr_out[t] = max(self.arrival[k, t] - t, 1)
            arr_soc_out[t] = self.arrival_soc[k, t]
            counts["arrival_estimated"] += 1
        frame = pd.DataFrame({
            "electric_vehicle_charger_state": state, "electric_vehicle_id": ids,
            "electric_vehicle_departure_time": dep_out, "electric_vehicle_required_soc_departure": req_out,
            "electric_vehicle_estimated_arrival_time": arr_out, "electric_vehicle_estimated_soc_arrival": arr_soc_out,
        })
        return frame[CHARGER_CSV_COLUMNS], counts
