"""Retention: the policy (windows), deletion claims and tombstones, what falls due, the
owner's notices, a dataset's history, the header firewall."""
