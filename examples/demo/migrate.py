"""A stand-in for database migrations: a one-shot job that runs to its end."""

import time

for step in ("0001_initial", "0002_add_users", "0003_add_index"):
    print(f"applying {step} ...", flush=True)
    time.sleep(0.3)
print("migrations done", flush=True)
