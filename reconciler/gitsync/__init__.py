"""The GitSync controller.

Its typed spec, the watch/schedule loop, one reconcile per step, and the one place outcomes are reported.
"""
