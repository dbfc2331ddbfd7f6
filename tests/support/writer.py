#!/usr/bin/env python3
"""A separate writer process for lightsnap's consistency tests.

Appends checksummed records to FILE, fsyncing each one, and after each fsync returns prints
"<seq> <unix ms>" on stdout: an acknowledgement that the record is on disk. Runs until killed.
A snapshot is consistent when every record acknowledged before the snapshot call is in it,
complete and with a valid checksum.
"""
import hashlib
import os
import sys
import time

path = sys.argv[1]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
seq = 0
while True:
    body = f"{seq:010d} " + "x" * 100
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    os.write(fd, f"{body} {digest}\n".encode())
    os.fsync(fd)
    print(f"{seq} {time.time() * 1000:.3f}", flush=True)
    seq += 1
