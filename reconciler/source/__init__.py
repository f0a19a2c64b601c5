"""Fetch a revision of the desired state: git (``git.py``), S3 buckets (``bucket.py``),
local folders (``local.py``) and the push-webhook receiver (``webhook.py``)."""
