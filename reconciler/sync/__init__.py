"""Plan, apply, prune and health-check one rendered revision against live state."""
