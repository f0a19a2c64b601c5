"""Offline policy gate evaluated on rendered objects before anything is applied."""
