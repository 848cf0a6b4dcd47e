"""Print a numbered line every second until stopped."""

import itertools
import time

for n in itertools.count(1):
    print(f"tick {n}", flush=True)
    time.sleep(1)
