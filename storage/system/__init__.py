"""This process and its machine: the clock, disk space, the claim holder's identity, the
process's metrics registry."""
