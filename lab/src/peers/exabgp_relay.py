# ExaBGP API helper for tortie-lab: relays the lines a test writes to a FIFO
# onto stdout (ExaBGP's API input) and appends everything ExaBGP sends us
# (JSON events, acks) to an events file the harness reads. Exits with ExaBGP.
import os, sys, threading

fifo, events = sys.argv[1], sys.argv[2]

def record():
    with open(events, "a", buffering=1) as out:
        for line in sys.stdin:
            out.write(line)
    os._exit(0)

threading.Thread(target=record, daemon=True).start()
while True:
    with open(fifo) as commands:  # blocks until the harness opens it for writing
        for line in commands:
            if line.strip():
                sys.stdout.write(line.strip() + "\n")
                sys.stdout.flush()
