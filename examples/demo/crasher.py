"""Run for a few seconds (argv[1], default 3), then crash with exit code 1."""

import sys
import time

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
print(f"crasher: up, crashing in {seconds:g}s", flush=True)
time.sleep(seconds)
print("crasher: something went wrong!", file=sys.stderr, flush=True)
sys.exit(1)
