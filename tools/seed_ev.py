"""EV fields of the sample sites' documents, in the real OPEVA layout.

A building document with chargers carries, at its time stamp, ``charging_sessions``
(who is plugged in where) and ``electric_vehicles`` (each EV's SoC and its
``flexibility`` estimates: arrival and departure times, SoC at arrival and at
departure, the charger it is going to). Sessions come from tools/seed_climate.py's
``charging_sessions`` (whole visits); here they become per-step document fields.

Two session forms exist upstream and both are written: the keyed form
``{<charger>: {power, electric_vehicle}}`` and the list form
``[{charger_id, power, user_id, soc, flexibility}]``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np

ANNOUNCE = timedelta(hours=2)  # an EV on its way says so this long before it arrives


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


class EvFields:
    """Per-step EV fields of one building, from its chargers' sessions."""

    def __init__(self, start: datetime, step: timedelta, steps: int, chargers: dict[str, list[dict[str, Any]]],
                 power: float, list_form: bool) -> None:
        self.start, self.step, self.power, self.list_form = start, step, power, list_form
        self.chargers = chargers
        times = start.timestamp() + step.total_seconds() * np.arange(steps)
        self.active: dict[str, np.ndarray] = {}
        self.coming: dict[str, np.ndarray] = {}
        for c, sessions in chargers.items():
            if not sessions:
                self.active[c] = self.coming[c] = np.full(steps, -1)
                continue
            arrivals = np.array([s["arrival"].timestamp() for s in sessions])
            departures = np.array([s["departure"].timestamp() for s in sessions])
            k = np.searchsorted(arrivals, times, side="right") - 1  # the last session that started
            self.active[c] = np.where((k >= 0) & (times < departures[np.clip(k, 0, None)]), k, -1)
            nxt = k + 1  # the next one, if it starts within ANNOUNCE
            ok = nxt < len(sessions)
            soon = np.zeros(steps, bool)
            soon[ok] = arrivals[nxt[ok]] - times[ok] <= ANNOUNCE.total_seconds()
            self.coming[c] = np.where(soon & (self.active[c] < 0), nxt, -1)

    def fields(self, i: int) -> dict[str, Any]:
        ts = self.start + self.step * i
        sessions: Any = [] if self.list_form else {}
        vehicles: dict[str, Any] = {}
        for c, plan in self.chargers.items():
            k = int(self.active[c][i])
            if k >= 0:
                s = plan[k]
                done = (ts - s["arrival"]) / (s["departure"] - s["arrival"])
                soc = round(s["arrival_soc"] + (s["required_soc"] - s["arrival_soc"]) * min(1.0, 1.6 * done), 1)
                flex = {"estimated_soc_at_arrival": s["arrival_soc"], "estimated_soc_at_departure": s["required_soc"],
                        "estimated_time_at_arrival": _iso(s["arrival"]), "estimated_time_at_departure": _iso(s["departure"]),
                        "charger": c, "mode": "flexible"}
                vehicles[s["ev_id"]] = {"SoC": round(soc / 100, 3), "flexibility": flex}
                power = round(self.power if soc < s["required_soc"] else 0.0, 2)
                if self.list_form:
                    sessions.append({"charger_id": c, "power": power, "user_id": s["ev_id"], "soc": round(soc / 100, 3), "flexibility": flex})
                else:
                    sessions[c] = {"power": power, "electric_vehicle": s["ev_id"]}
            k = int(self.coming[c][i])
            if k >= 0:
                s = plan[k]
                vehicles[s["ev_id"]] = {"SoC": round(s["arrival_soc"] / 100 + 0.05, 3), "flexibility": {
                    "estimated_soc_at_arrival": s["arrival_soc"], "estimated_time_at_arrival": _iso(s["arrival"]),
                    "estimated_time_at_departure": _iso(s["departure"]), "estimated_soc_at_departure": s["required_soc"],
                    "charger": c, "mode": "flexible"}}
        out: dict[str, Any] = {}
        if sessions:
            out["charging_sessions"] = sessions
        if vehicles:
            out["electric_vehicles"] = vehicles
        return out
