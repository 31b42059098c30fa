#!/usr/bin/env python3
"""Checks of the synthetic held-out generator (design 0007).

Run: python3 plugins/ensemble/heldout/test_synth_heldout.py (or pytest).
"""

import os
import random
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synth_heldout  # noqa: E402


def test_traffic_draws_every_sensor_kind():
    # Occupancy sits near 3 %, speed near 66 mph, travel time near 120 s
    # outside the rush hours: the median of a file tells them apart. The
    # kind must not be overwritten by an anomaly's kind (round 29 found
    # every traffic file was travel time).
    seen = set()
    for k in range(30):
        _, values, _, _ = synth_heldout.traffic(random.Random(f"check/{k}"))
        med = statistics.median(values)
        seen.add("occupancy" if med < 30 else "speed" if med < 90 else "traveltime")
    assert seen == {"occupancy", "speed", "traveltime"}, seen


if __name__ == "__main__":
    test_traffic_draws_every_sensor_kind()
    print("ok")
