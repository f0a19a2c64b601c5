"""Tell people what happened: status conditions, Events, metrics, logs, alerts."""
